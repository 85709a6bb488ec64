#!/usr/bin/env bash
# Paper-profile runs in one short GPU window: bundles are written here, trained there, recorded here.
#
#   1. here (the warehouse has the dataset and its codebooks):
#        benchmarks/gpu_reproduce.sh export
#   2. there, as ONE device call (the device tool's `run`), carrying the bundles:
#        command: bash benchmarks/gpu_reproduce.sh device      carry: [".genrec/bundles"]     timeout_s: 590
#      it runs `reproduce --dry-run` (bundles, every model's training step on the GPU, disk) and only then
#      `reproduce`, stopped after $BUDGET; run.json / metrics.csv / progress.json / train.log of every
#      run come back as $OUT/runs.tgz (checkpoints stay there: the way back takes 8 files of 16 MiB).
#   3. here again, with the folder the device tool put the files in:
#        benchmarks/gpu_reproduce.sh record /work/.device/<...>/runs.tgz
#
# Settings (environment): PRESET, DATASET, MODELS, SEEDS, PROFILE, TRAIN_SETTINGS, MODEL_SETTINGS, BUDGET (7m).
# Give the same settings to all three steps (export, device, record): they name the bundles and the runs folder.
# The default TRAIN_SETTINGS cap training at 4 minutes of wall clock per run (`max_train_seconds`:
# the run then ends as if early-stopped, keeps its best validated weights and is ranked), validating
# every 1,000 steps on 2,000 users: the paper's schedule (inverse square root, which does not depend on
# the cap) truncated to the window, not its 200k steps. run.json records the steps each run took.
# The dry run prints each model's forward+backward time. There is no resuming across windows.
# LASAR's line (MODELS=lasar_sft,explicit_cot: bundles exported after cot_texts carry the teacher CoTs) trains
# MiniOneRec first and Stage 2 after it, so give each stage half the window: "max_train_seconds": 120.
#
# PRESET=cpu-tables: the `cpu`-profile runs of issue 12's tables instead (TIGER, S²GR, CARE, CARE(LETTER) and
# every item-id baseline, seeds 0-2; a fixed 4-epoch budget for the SID models, RecBole's early-stopped recipe
# for the item-id ones): about 30 core-hours of this project's 2-core CPU (ReaRec alone ~2.5 h a run), which
# no 3-hour session holds. Its bundles need
# the rq_vae, coba_rqvae and letter codebooks in the warehouse (on the CPU, both cores: ~1 h from raw data;
# start them first). The runs are the `cpu` budget trained on CUDA (bf16 autocast): say so beside the figures.
# Runs still training at the 6-minute cap end early-stopped, with their best weights ranked; run.json has
# their steps.
set -uo pipefail

PRESET=${PRESET:-}
if [ "$PRESET" = cpu-tables ]; then
  MODELS=${MODELS:-tiger,s2gr,care,care_letter,sasrec,gru4rec,caser,bert4rec,rearec_erl,rearec_prl}
  PROFILE=${PROFILE:-cpu}
  TRAIN_SETTINGS=${TRAIN_SETTINGS:-'{"max_train_seconds": 360}'}
elif [ -n "$PRESET" ]; then
  echo "unknown PRESET=$PRESET (known: cpu-tables)" >&2
  exit 2
fi
DATASET=${DATASET:-amazon-beauty}
MODELS=${MODELS:-tiger,s2gr,care,care_letter,reg4rec,reg4rec_wo_pars,reg4rec_wo_corp,minionerec,sasrec}
SEEDS=${SEEDS:-0,1,2}
PROFILE=${PROFILE:-paper}
TRAIN_SETTINGS=${TRAIN_SETTINGS:-'{"max_train_seconds": 240, "eval_every": 1000, "eval_max_examples": 2000}'}
MODEL_SETTINGS=${MODEL_SETTINGS:-'{}'}
BUDGET=${BUDGET:-7m}  # training and final ranking (timeout's units); the dry run and transfers need the rest of 10m
DEVICE=${DEVICE:-cuda}
BUNDLES=${BUNDLES:-.genrec/bundles/$DATASET}
RUNS=${RUNS:-.genrec/runs/$DATASET-$PROFILE}

# the same arguments for the dry run and the real one, so the dry run checks what will run
ARGS=(--bundles "$BUNDLES" --models "$MODELS" --seeds "$SEEDS" --profile "$PROFILE" --out "$RUNS" --device "$DEVICE"
      --train-settings "$TRAIN_SETTINGS" --model-settings "$MODEL_SETTINGS")

case "${1:-}" in
  export)
    PYTHON=${PYTHON:-.venv/bin/python}
    "$PYTHON" -m genrec_ml.cli export-bundles --dataset "$DATASET" --models "$MODELS" --out "$BUNDLES"
    du -sh "$BUNDLES"  # all of it travels with the working tree (64 MiB at most)
    ;;
  device)
    PYTHON=${PYTHON:-python3}
    export PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
    "$PYTHON" -m genrec_ml.cli reproduce "${ARGS[@]}" --dry-run || { echo "dry run failed: nothing trained"; exit 2; }
    # SIGTERM at the deadline: reproduce stops its runs and still prints the table of what finished
    timeout "$BUDGET" "$PYTHON" -m genrec_ml.cli reproduce "${ARGS[@]}"
    status=$?
    tar czf "${OUT:?the device tool sets OUT}/runs.tgz" --exclude='*.pt' -C "$RUNS" .
    ls -l "$OUT"
    exit $status
    ;;
  record)
    PYTHON=${PYTHON:-.venv/bin/python}
    archive=${2:?usage: $0 record PATH/runs.tgz}
    mkdir -p "$RUNS" && tar xzf "$archive" -C "$RUNS"
    "$PYTHON" -m genrec_ml.cli record --runs "$RUNS"
    ;;
  *)
    echo "usage: $0 export | device | record PATH/runs.tgz" >&2
    exit 2
    ;;
esac
