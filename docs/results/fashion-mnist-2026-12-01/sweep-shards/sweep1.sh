#!/bin/bash
# Shards (2/client) sweep, 10 clients, 20 rounds each, client lr 0.01 (as the committed FedAvg run).
G=/work/exp/bin/greenfed-ad9aa20
cd /work/exp/sweep
run() { name=$1; shift; echo "== $name $(date -u +%T) $*"; $G run --partition shards --clients 10 --seed 1 --lr 0.01 --max-rounds 20 --target-accuracy 0.90 --run-dir /work/exp/sweep/$name "$@" > /work/exp/sweep/$name.log 2>&1; echo "rc=$? $(date -u +%T)"; }
run fedavgm-b0.9 --strategy fedavgm --server-momentum 0.9 --server-learning-rate 1.0
run fedadam-e0.01 --strategy fedadam --eta 0.01 --tau 0.001
run fedyogi-e0.01 --strategy fedyogi --eta 0.01
run fedavgm-b0.7 --strategy fedavgm --server-momentum 0.7 --server-learning-rate 1.0
