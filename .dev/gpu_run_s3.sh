#!/usr/bin/env bash
# Session-3 device run: every training job of the open quality gaps at once on one GPU, each
# under its own timeout; everything written under /tmp/w is tarred into $OUT/results.tar.gz
# every 40 s (so a cut run still returns what it had) and once more at the end.
# Env: OUT (required), DEVICE (default cuda), TRAIN_MIN (training minutes per job, default 4.5),
# JOB_SECONDS (hard limit per job, default 470), PY (default python3), ONLY (space-separated job
# names to run, default all), W (work folder, default /tmp/w).
# Weights warm-started from deepinv_pnn/weights; data from .dev/data (carried).
# Measured on the H200 (session 3): with all 14 jobs at once each job ran about 10x slower than
# alone (CRR t=10 batch 128: 260 steps in 4.5 min; with 2 jobs at once 4044 steps in 5.6 min):
# the processes time-slice the GPU. Run at most 2-3 jobs per call (ONLY="job1 job2").
# Warm starts need a small learning rate: Adam's first steps at 1e-3 cost the converged TV-map
# network 3-5 dB (measured on CPU before the run).
set -u
FINAL=${OUT:?set OUT}
DEVICE=${DEVICE:-cuda}; TRAIN=${TRAIN_MIN:-4.5}; JOBT=${JOB_SECONDS:-470}; PY=${PY:-python3}
W=${W:-/tmp/w}
source .dev/gpu/python_env.sh
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
mkdir -p "$W"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
$PY -c "import torch, deepinv, deepinv_pnn; print('torch', torch.__version__, 'deepinv', deepinv.__version__, 'cuda', torch.cuda.is_available())" || exit 1
D=.dev/data/bsd400; M=.dev/data/material; WD=deepinv_pnn/weights
m() { $PY -c "print(round($TRAIN * $1, 3))"; }
PIDS=()
job() {
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  mkdir -p "$W/$name"
  ( cd "$PWD" && timeout "$JOBT" "$@" > "$W/$name/log.txt" 2>&1; echo "exit $?" >> "$W/$name/log.txt" ) &
  PIDS+=($!)
  echo "started $name"
}
T=(--device "$DEVICE" --seed 0)
# ridge (issue 4): CRR t = 10 at sigma 25/255 and WCRR (JFB), each warm and from scratch;
# --minutes covers training (train-fraction) plus the (lambda, mu) tuning and validation
RIDGE_C=(--batch 128 --val-images 8 --tune-images 2 --tune-size 64 --tune-sigmas 5 15 25 50 --tune-evals 12 --val-tol 1e-4 --ckpt-every 500)
job crr_warm $PY -m deepinv_pnn.training.train_crr --data-dir $D --out $W/crr_warm/crr.safetensors "${T[@]}" \
  --minutes "$(m 1.33)" --train-fraction 0.75 --sigma 25 --t-steps 10 --lr 2e-4 "${RIDGE_C[@]}" \
  --checkpoint $W/crr_warm/ckpt.pt --init $WD/crr_bsd400.safetensors
job crr_scratch $PY -m deepinv_pnn.training.train_crr --data-dir $D --out $W/crr_scratch/crr.safetensors "${T[@]}" \
  --minutes "$(m 1.33)" --train-fraction 0.75 --sigma 25 --t-steps 10 "${RIDGE_C[@]}" --checkpoint $W/crr_scratch/ckpt.pt
RIDGE_W=(--batch 64 --val-images 8 --val-tol 1e-4 --ckpt-every 500)
job wcrr_warm $PY -m deepinv_pnn.training.train_wcrr --data-dir $D --out $W/wcrr_warm/wcrr.safetensors "${T[@]}" \
  --minutes "$(m 1.25)" --train-fraction 0.8 --lr 2e-4 "${RIDGE_W[@]}" --checkpoint $W/wcrr_warm/ckpt.pt \
  --init $WD/wcrr_bsd400.safetensors
job wcrr_scratch $PY -m deepinv_pnn.training.train_wcrr --data-dir $D --out $W/wcrr_scratch/wcrr.safetensors "${T[@]}" \
  --minutes "$(m 1.25)" --train-fraction 0.8 "${RIDGE_W[@]}" --checkpoint $W/wcrr_scratch/ckpt.pt
# TV parameter maps (issue 6): continued from the shipped weights (small lr: Adam's first
# sign-like steps at 1e-3 cost 3-5 dB on a converged net) and from scratch with bigger crops
job tv_denoise_warm $PY -m deepinv_pnn.training.train_param_map --problem denoise --data-dir $D "${T[@]}" \
  --minutes "$TRAIN" --crop 96 --batch 32 --n-iter 32 --n-iter-max 160 --lr 1e-4 --loss psnr \
  --init $WD/tvmap_denoise.safetensors --out $W/tv_denoise_warm/tvmap_denoise.safetensors
job tv_denoise_scratch $PY -m deepinv_pnn.training.train_param_map --problem denoise --data-dir $D "${T[@]}" \
  --minutes "$TRAIN" --crop 96 --batch 32 --n-iter 32 --n-iter-max 160 --lr 2e-3 --loss psnr \
  --out $W/tv_denoise_scratch/tvmap_denoise.safetensors
job tv_deblur_warm $PY -m deepinv_pnn.training.train_param_map --problem deblur --data-dir $D "${T[@]}" \
  --minutes "$TRAIN" --crop 96 --batch 16 --n-iter 96 --n-iter-max 320 --lr 1e-4 --loss psnr \
  --init $WD/tvmap_deblur.safetensors --out $W/tv_deblur_warm/tvmap_deblur.safetensors
job tv_deblur_scratch $PY -m deepinv_pnn.training.train_param_map --problem deblur --data-dir $D "${T[@]}" \
  --minutes "$TRAIN" --crop 96 --batch 16 --n-iter 96 --n-iter-max 320 --lr 2e-3 --loss psnr \
  --out $W/tv_deblur_scratch/tvmap_deblur.safetensors
# ConvPNN (issue 3), continued from the shipped weights
for S in sigma001 sigma25; do
  if [ $S = sigma25 ]; then SIG=$($PY -c "print(25/255)"); else SIG=0.01; fi
  job pnn_$S $PY -m deepinv_pnn.training.train_convpnn --data-dir $D --out $W/pnn_$S/convpnn_gray_$S.safetensors \
    "${T[@]}" --minutes "$TRAIN" --sigma "$SIG" --batch-size 64 --patch-size 64 --lr 0.001 --lr-stiefel 0.02 \
    --init $WD/convpnn_gray_$S.safetensors --checkpoint $W/pnn_$S/ckpt.pt --checkpoint-every 500
done
# patch priors (issue 5): WPPNet full size and the shipped small one continued, WPPFlow, patchNR
job wppnet_full $PY -m deepinv_pnn.training.train_wppnet --data-dir $M --out $W/wppnet_full/wppnet_sic_x4.safetensors \
  "${T[@]}" --minutes "$TRAIN" --features 64 --batch-size 16 --lr 5e-4 --lam 0.02 --center
job wppnet_small $PY -m deepinv_pnn.training.train_wppnet --data-dir $M --out $W/wppnet_small/wppnet_sic_x4_small.safetensors \
  "${T[@]}" --minutes "$TRAIN" --features 16 --batch-size 16 --lr 2e-4 --lam 0.02 --center \
  --init $WD/wppnet_sic_x4_small.safetensors
job wppflow $PY -m deepinv_pnn.training.train_wppflow --data-dir $M --out $W/wppflow/wppflow_sic_x4.safetensors \
  "${T[@]}" --minutes "$TRAIN" --val-samples 8
job patchnr $PY -m deepinv_pnn.training.train_patchnr --data-dir $M --out $W/patchnr/patchnr_sic.safetensors \
  "${T[@]}" --minutes "$TRAIN" --steps 4000
( while true; do sleep 40; tar -czf "$FINAL/tmp.tar.gz" -C "$W" . 2> /dev/null && mv -f "$FINAL/tmp.tar.gz" "$FINAL/results.tar.gz"; done ) &
TARP=$!
for P in "${PIDS[@]}"; do wait "$P"; done
kill $TARP 2> /dev/null
tar -czf "$FINAL/tmp.tar.gz" -C "$W" . && mv -f "$FINAL/tmp.tar.gz" "$FINAL/results.tar.gz"
for f in "$W"/*/log.txt; do echo "== $f"; tr '\r' '\n' < "$f" | grep -v "it/s\]$" | tail -n 4 | cut -c1-300; done
ls -la "$FINAL"
