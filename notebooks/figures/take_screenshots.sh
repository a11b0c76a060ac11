#!/bin/bash
# Screenshots of TensorBoard for the README: a short ResNet-164 + SPEM run on the offline digits, then in
# headless Chromium (Debian: apt-get update && apt-get install chromium) the lam view `fit` prints, the
# Custom Scalars tab, the lam figure's card and the HParams tab.
# Run from the repository root: bash notebooks/figures/take_screenshots.sh
# With a log folder as argument, its runs are shown instead: bash notebooks/figures/take_screenshots.sh runs/x
set -euo pipefail
OUT=notebooks/figures
LOGS=${1:-}
if [ -z "$LOGS" ]; then
  LOGS=$(mktemp -d)
  trap 'rm -rf "$LOGS"' EXIT
  python3 -m spe_lightning fit --config configs/quickstart.yaml \
    --model.backbone_kwargs.depth 164 --model.backbone_kwargs.block bottleneck \
    --data.init_args.batch_size 32 --trainer.max_epochs 12 --trainer.limit_train_batches 12 \
    --trainer.log_every_n_steps 4 --lr_scheduler.init_args.T_max 12 --optimizer.init_args.lr 0.2 \
    --trainer.logger.init_args.save_dir "$LOGS" --trainer.logger.init_args.name null \
    --trainer.enable_progress_bar false
fi
# the flags and the lam view's address that fit prints
read -r FLAGS LAM_VIEW < <(python3 -c "from spe_lightning.runs.log_names import LAM_VIEW, TENSORBOARD_FLAGS as F
print(F.replace(' ', '='), LAM_VIEW)")
PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
tensorboard --logdir "$LOGS" --host 127.0.0.1 --port "$PORT" "$FLAGS" 2>/dev/null &
TB=$!
trap 'kill $TB; [ -n "${1:-}" ] || rm -rf "$LOGS"' EXIT
until curl -sf "http://127.0.0.1:$PORT/data/runs" >/dev/null; do sleep 1; done
sleep 5  # the first load of the logdir
shoot() {  # file, window size, query (after ?), page; forceSVG: headless Chromium draws WebGL charts empty
  for _ in 1 2 3 4 5; do  # Time Series sometimes draws its cards before their data came: empty, taken again
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$2" \
      --virtual-time-budget=40000 --screenshot="$OUT/$1" "http://127.0.0.1:$PORT/?forceSVG=true&$3${4-}" 2>/dev/null
    [[ "${4-}$3" == *timeseries* ]] || return 0
    python3 -c "from PIL import Image; import sys; card = Image.open(sys.argv[1]).convert('RGB').crop((340, 200, 760, 480))
sys.exit(len(card.getcolors(1 << 20)) < 100)" "$OUT/$1" && return
    sleep 3
  done
  echo "TensorBoard drew $1 empty five times" >&2
  return 1
}
shoot tensorboard_time_series.png 1500,1000 "${LAM_VIEW#\?}"
shoot tensorboard_custom_scalars.png 1500,1100 "" "#custom_scalars"
shoot tensorboard_lam_overview.png 1500,560 "tagFilter=lam_overview" "#timeseries"
shoot tensorboard_hparams.png 2400,300 "" "#hparams"
