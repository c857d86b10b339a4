#!/bin/bash
# issue 32 measurement, batch 4: the defaults end to end (README's command + data.truth; photo_evidence on the disk)
cd /work/wt/stopping
while [ ! -f /tmp/stopm/batch3.done ]; do sleep 10; done
OMP_NUM_THREADS=1 python run.py data=observed data.path=data/observed/chelsea_blurred.png kernel=file kernel.path=data/observed/gaussian_kernel.npy noise.var=2 loss=bp_tv model=small loss.iterations=1500 log_every=50 data.truth=data/observed/chelsea_truth.png threads=1 progress=false results_root=/tmp/stopm/store hydra.run.dir=/tmp/stopm/readme > /tmp/stopm/log-readme.txt 2>&1
OMP_NUM_THREADS=1 python scripts/photo_evidence.py --images retina,chelsea --kernels disk --losses bp_tv --boundaries valid --out /tmp/stopm/photo_hard --set threads=1 > /tmp/stopm/log-photo_hard.txt 2>&1
echo done > /tmp/stopm/batch4.done
