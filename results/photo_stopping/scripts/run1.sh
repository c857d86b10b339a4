#!/bin/bash
# issue 32 measurement, batch 1: bp_tv (paper eps), bp_tv with IDBP's eps (7e-3 sigma^2 on the 0..255 scale), ls_tv
cd /work/wt/stopping
for img in retina chelsea; do
for v in "bp_tv|loss=bp_tv" "bp_tv_idbp|loss=bp_tv loss.eps1=455.2 loss.eps2=0" "ls_tv|loss=ls_tv"; do
  name=${v%%|*}; ov=${v#*|}
  OMP_NUM_THREADS=1 python run.py data=folder data.folder=results/photo_stopping/imgs "data.images=[$img]" data.crop=96 kernel=disk boundary=valid noise.var=2 $ov model=small loss.iterations=1500 log_every=25 threads=1 progress=false checkpoint_every=0 results_root=/tmp/stopm/store hydra.run.dir=/tmp/stopm/jobs/$img-disk-$name > /tmp/stopm/log-$img-$name.txt 2>&1
done; done
echo done > /tmp/stopm/batch1.done
