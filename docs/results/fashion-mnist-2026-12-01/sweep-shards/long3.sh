#!/bin/bash
G=/work/exp/bin/greenfed-m2
echo "== dir0.1-fedavgm-b0.7 $(date -u +%T)"
$G run --partition dirichlet --alpha 0.1 --clients 10 --seed 1 --lr 0.01 --max-rounds 60 --target-accuracy 0.90 --strategy fedavgm --server-momentum 0.7 --server-learning-rate 1.0 --run-dir /work/exp/sweep/dir0.1-fedavgm-b0.7 > /work/exp/sweep/dir0.1-fedavgm-b0.7.log 2>&1
echo "rc=$? $(date -u +%T)"
