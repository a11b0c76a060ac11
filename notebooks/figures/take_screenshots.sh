#!/bin/bash
# Screenshots of TensorBoard for the README: a short ResNet-164 + SPEM run on the offline digits, then the
# Time Series and HParams tabs in headless Chromium (Debian: apt-get update && apt-get install chromium).
# Run from the repository root: bash notebooks/figures/take_screenshots.sh
set -euo pipefail
OUT=notebooks/figures
LOGS=$(mktemp -d)
python3 -m spe_lightning fit --config configs/quickstart.yaml \
  --model.backbone_kwargs.depth 164 --model.backbone_kwargs.block bottleneck \
  --data.init_args.batch_size 32 --trainer.max_epochs 12 --trainer.limit_train_batches 12 \
  --trainer.log_every_n_steps 4 --lr_scheduler.init_args.T_max 12 --optimizer.init_args.lr 0.2 \
  --trainer.logger.init_args.save_dir "$LOGS" --trainer.logger.init_args.name null \
  --trainer.enable_progress_bar false
PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
tensorboard --logdir "$LOGS" --host 127.0.0.1 --port "$PORT" --samples_per_plugin images=0 2>/dev/null &
TB=$!
trap 'kill $TB; rm -rf "$LOGS"' EXIT
until curl -sf "http://127.0.0.1:$PORT/data/runs" >/dev/null; do sleep 1; done
sleep 5  # the first load of the logdir
shoot() {  # file, window size, URL part after the host; forceSVG: headless Chromium draws WebGL charts empty
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size="$2" \
    --virtual-time-budget=40000 --screenshot="$OUT/$1" "http://127.0.0.1:$PORT/?forceSVG=true$3" 2>/dev/null
}
shoot tensorboard_time_series.png 1500,1000 "&smoothing=0&tagFilter=watch%2Flam%2F#timeseries"
shoot tensorboard_hparams.png 1900,400 "#hparams"
