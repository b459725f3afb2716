#!/bin/bash
G=/work/exp/bin/greenfed-m2
echo "== shards-scaffold-100 $(date -u +%T)"
$G run --partition shards --clients 10 --seed 1 --max-rounds 100 --target-accuracy 0.90 --momentum 0 --lr 0.05 --strategy scaffold --run-dir /work/exp/sweep/shards-scaffold-m0-lr0.05 > /work/exp/sweep/shards-scaffold-m0-lr0.05.log 2>&1
echo "rc=$? $(date -u +%T)"
