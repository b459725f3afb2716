#!/bin/bash
G=/work/exp/bin/greenfed-m1
echo "== shards-fedavgm-b0.7-100 $(date -u +%T)"
$G run --partition shards --clients 10 --seed 1 --lr 0.01 --max-rounds 100 --target-accuracy 0.90 --strategy fedavgm --server-momentum 0.7 --server-learning-rate 1.0 --run-dir /work/exp/sweep/shards-fedavgm-b0.7-100 > /work/exp/sweep/shards-fedavgm-b0.7-100.log 2>&1
echo "rc=$? $(date -u +%T)"
