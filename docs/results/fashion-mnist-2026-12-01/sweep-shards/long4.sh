#!/bin/bash
G=/work/exp/bin/greenfed-m3
echo "== shards-scaffold-m0.9-lr0.01 $(date -u +%T)"
$G run --partition shards --clients 10 --seed 1 --lr 0.01 --max-rounds 20 --target-accuracy 0.90 --strategy scaffold --run-dir /work/exp/sweep/shards-scaffold-m0.9-lr0.01 > /work/exp/sweep/shards-scaffold-m0.9-lr0.01.log 2>&1
echo "rc=$? $(date -u +%T)"
