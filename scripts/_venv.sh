# Shared by scripts/test and scripts/demo: create or reuse .venv and install the project into it.
# Never trusts a `python3` shim for anything but creating the venv; everything after runs .venv's own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${FANOUT_BOOTSTRAP_PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "claude-fanout needs Python >= 3.11")'
  "$py" -m venv "$venv"
fi
stamp="$venv/.fanout-installed"
# constraints.txt pins every package to the versions the suite was last verified with (refresh:
# ./scripts/lock).
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$root/constraints.txt" -nt "$stamp" ]; then
  log="$venv/install.log"
  echo "Installing claude-fanout and its test tools into $venv (log: $log)…" >&2
  if ! { "$venv/bin/python" -m pip install --disable-pip-version-check -c "$root/constraints.txt" --upgrade pip &&
         "$venv/bin/python" -m pip install --disable-pip-version-check -c "$root/constraints.txt" -e "$root[dev,ray]"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "Installing into $venv failed; the whole log is $log" >&2
    exit 1
  fi
  touch "$stamp"
fi
