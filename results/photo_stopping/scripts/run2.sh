#!/bin/bash
# issue 32 measurement, batch 2: the BP->LS schedule (DDPG) on the disk; IDBP's eps on kernels without zeros
cd /work/wt/stopping
while [ ! -f /tmp/stopm/batch1.done ]; do sleep 10; done
run() { img=$1; kern=$2; name=$3; shift 3
  OMP_NUM_THREADS=1 python run.py data=folder data.folder=results/photo_stopping/imgs "data.images=[$img]" data.crop=96 kernel=$kern boundary=valid noise.var=2 "$@" model=small loss.iterations=1500 log_every=25 threads=1 progress=false checkpoint_every=0 results_root=/tmp/stopm/store hydra.run.dir=/tmp/stopm/jobs/$img-$kern-$name > /tmp/stopm/log-$img-$kern-$name.txt 2>&1; }
run retina disk bp_tv_tols loss=bp_tv "loss.to_ls=[0.2,0.6]"
run chelsea disk bp_tv_tols loss=bp_tv "loss.to_ls=[0.2,0.6]"
run chelsea gaussian bp_tv loss=bp_tv
run chelsea gaussian bp_tv_idbp loss=bp_tv loss.eps1=455.2 loss.eps2=0
run coffee shake bp_tv loss=bp_tv
run coffee shake bp_tv_idbp loss=bp_tv loss.eps1=455.2 loss.eps2=0
echo done > /tmp/stopm/batch2.done
