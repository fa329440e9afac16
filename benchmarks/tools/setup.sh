#!/usr/bin/env bash
# Installs the ecosystem's LLM benchmark tools, each in its own virtualenv, and builds the offline Qwen3
# tokenizer they need (docs/benchmark-tools.md). Never into the project's .venv: guidellm and
# inference-perf pin transformers, datasets, numpy and (guidellm) torch, which would fight Locust,
# FastAPI and Ray there.
#
#   benchmarks/tools/setup.sh [--relock] [all|guidellm|inference-perf|tokenizer]...   (default: all)
#
#   .venv-tools/uv/               uv (pinned), the installer: ~5x faster than pip here (parallel downloads)
#   .venv-tools/guidellm/         guidellm 0.8.1 on python3 (3.11 here; GUIDELLM_PYTHON=… names another),
#                                 with torch's CPU build for 3.11 from /opt/wheels
#   .venv-tools/inference-perf/   inference-perf 0.7.0 on Python >= 3.12 (its Requires-Python); skipped,
#                                 saying so, when no such Python is found (PYTHON312=… names one)
#   .venv-tools/qwen3-tokenizer/  the Hugging Face tokenizer directory both tools load (built with guidellm's venv)
#
# Idempotent: a venv whose stamp matches this script and its lock file is left as it is; a changed one is
# rebuilt from nothing. Every package is pinned by benchmarks/tools/<tool>.lock (constraints); --relock
# resolves afresh and rewrites the lock. Each venv records what it holds (installed.txt) and what it
# cost (install.json: seconds, MB). .venv-tools/ is in .gitignore.
set -euo pipefail
SCRIPT="$(realpath "$0")"
cd "$(dirname "$SCRIPT")/../.."

TOOLS_DIR="${GRID_TOOLS_DIR:-.venv-tools}"
HERE=benchmarks/tools
UV_PIN="uv==0.13.9"
GUIDELLM_PIN="guidellm==0.8.1"
INFERENCE_PERF_PIN="inference-perf==0.7.0"
# guidellm requires torch (its data loader); PyPI's Linux build is CUDA's, GBs. This machine kind keeps
# the CPU build for Python 3.11 on disk: pinned by its local label and found with --find-links.
TORCH_CPU_WHEELS=/opt/wheels
TORCH_VERSION=2.13.0
# tiktoken: transformers' TikTokenConverter reads qwen.tiktoken with it (qwen_tokenizer.py)
GUIDELLM_EXTRA="tiktoken"
declare -A WARM_IMPORTS=(
  [guidellm]="guidellm.__main__, guidellm.entrypoints, guidellm.benchmark, guidellm.data.loaders.torch, transformers.convert_slow_tokenizer, tiktoken"
  [inference-perf]="inference_perf.main"
)

relock=0
targets=()
for arg in "$@"; do
  case "$arg" in
    --relock) relock=1 ;;
    all | guidellm | inference-perf | tokenizer) targets+=("$arg") ;;
    *)
      echo "usage: $0 [--relock] [all|guidellm|inference-perf|tokenizer]..." >&2
      exit 2
      ;;
  esac
done
((${#targets[@]})) || targets=(all)
wants() { [[ " ${targets[*]} " == *" all "* || " ${targets[*]} " == *" $1 "* ]]; }
log() { echo "tools: $*" >&2; }

python312() { # prints a Python >= 3.12 interpreter, or nothing
  local candidates=("${PYTHON312:-}" python3.13 python3.12)
  # pyenv's shims refuse a version that is installed but not active: look in its versions directly
  candidates+=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3)
  candidates+=(/usr/bin/python3 /usr/local/bin/python3)
  for py in "${candidates[@]}"; do
    [[ -n "$py" ]] || continue
    if "$py" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      command -v "$py" || echo "$py"
      return
    fi
  done
}

UV="$TOOLS_DIR/uv/bin/uv"
ensure_uv() {
  if [[ ! -x "$UV" ]] || [[ "$("$UV" --version)" != "uv ${UV_PIN#uv==}"* ]]; then
    rm -rf "$TOOLS_DIR/uv"
    python3 -m venv "$TOOLS_DIR/uv"
    "$TOOLS_DIR/uv/bin/python" -m pip install --quiet --disable-pip-version-check "$UV_PIN"
  fi
}

# install_venv NAME PYTHON LOCK PACKAGE...
install_venv() {
  local name=$1 python=$2 lock=$3
  shift 3
  local venv="$TOOLS_DIR/$name" stamp
  stamp=$(cat "$SCRIPT" "$lock" 2>/dev/null | sha256sum | cut -c1-16)
  if ((!relock)) && [[ -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$stamp" ]]; then
    log "$name: up to date ($venv)"
    return
  fi
  log "$name: installing $* into $venv with $("$python" --version 2>&1)"
  local started=$SECONDS
  rm -rf "$venv"
  "$UV" venv --quiet --python "$python" "$venv"
  local args=(--quiet --python "$venv/bin/python")
  local pkgs=("$@") torch_pin="torch==$TORCH_VERSION"
  if [[ " ${pkgs[*]} " == *" $torch_pin "* ]] && compgen -G "$TORCH_CPU_WHEELS/torch-$TORCH_VERSION+cpu-*" >/dev/null; then
    torch_pin="torch==$TORCH_VERSION+cpu"
    args+=(--find-links "$TORCH_CPU_WHEELS")
    pkgs=("${pkgs[@]/#torch==$TORCH_VERSION/$torch_pin}")
  elif [[ " ${pkgs[*]} " == *" $torch_pin "* ]]; then
    log "$name: no CPU build of torch $TORCH_VERSION in $TORCH_CPU_WHEELS: PyPI's (CUDA, several GB) it is"
  fi
  local constraints
  constraints=$(mktemp)
  if ((relock)) || [[ ! -f "$lock" ]]; then
    "$UV" pip install "${args[@]}" "${pkgs[@]}"
    {
      echo "# $name's venv ($("$python" --version 2>&1)), resolved by $HERE/setup.sh --relock on $(date -u +%F);" \
        "used as constraints."
      # the CPU build's local label (+cpu) is not on PyPI: the lock names the release (see TORCH_CPU_WHEELS)
      "$UV" pip freeze --quiet --python "$venv/bin/python" | sed -E 's/^(torch==[0-9.]+)\+cpu$/\1/'
    } >"$lock"
    log "$name: wrote $lock"
  else
    sed -E "s/^torch==.*/$torch_pin/" "$lock" >"$constraints" # the CPU build's label, where it is on disk
    "$UV" pip install "${args[@]}" -c "$constraints" "${pkgs[@]}"
  fi
  rm -f "$constraints"
  "$UV" pip freeze --quiet --python "$venv/bin/python" >"$venv/installed.txt"
  # Byte-compile what the tool imports by importing it once. Not `--compile-bytecode` (all of torch and
  # transformers: ~40 s of CPU each), and not left to the runs: PYTHONDONTWRITEBYTECODE=1 is set on these
  # machines, so every run would compile the same ~15 s of modules again.
  env -u PYTHONDONTWRITEBYTECODE "$venv/bin/python" -c "import ${WARM_IMPORTS[$name]}" 2>/dev/null
  local seconds=$((SECONDS - started)) mb
  mb=$(du -sm "$venv" | cut -f1)
  printf '{"seconds": %d, "megabytes": %d, "python": "%s", "installer": "%s", "date": "%s"}\n' \
    "$seconds" "$mb" "$("$python" --version 2>&1)" "$("$UV" --version)" "$(date -u +%FT%TZ)" >"$venv/install.json"
  cat "$SCRIPT" "$lock" | sha256sum | cut -c1-16 >"$venv/.stamp" # the lock may just have been written
  log "$name: installed in ${seconds} s, ${mb} MB ($(wc -l <"$venv/installed.txt") packages: $venv/installed.txt)"
}

mkdir -p "$TOOLS_DIR"
ensure_uv
if wants guidellm || wants tokenizer; then
  install_venv guidellm "${GUIDELLM_PYTHON:-python3}" "$HERE/guidellm.lock" "$GUIDELLM_PIN" "torch==$TORCH_VERSION" "$GUIDELLM_EXTRA"
fi
if wants inference-perf; then
  py312=$(python312)
  if [[ -n "$py312" ]]; then
    install_venv inference-perf "$py312" "$HERE/inference-perf.lock" "$INFERENCE_PERF_PIN"
  else
    log "inference-perf: SKIPPED: it requires Python >= 3.12 and none was found (set PYTHON312=/path/to/python3.12)"
  fi
fi
started=$SECONDS
env -u PYTHONDONTWRITEBYTECODE "$TOOLS_DIR/guidellm/bin/python" "$HERE/qwen_tokenizer.py" --out "$TOOLS_DIR/qwen3-tokenizer" >/dev/null
log "qwen3-tokenizer: ready in $((SECONDS - started)) s ($TOOLS_DIR/qwen3-tokenizer)"
