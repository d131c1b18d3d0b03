# Sourced by the scripts: creates the virtualenv on first use, refreshes it when
# pyproject.toml or the settings below change, and sets $PY.
#   VENV                 the virtualenv's directory (default .venv)
#   PYTHON               the interpreter that creates it (default python3), e.g.
#                        PYENV_VERSION=3.10.13 PYTHON=python or PYTHON=python3.13
#   EXTRA_REQUIREMENTS   requirement specifiers installed beside the repo, e.g.
#                        "livekit-agents==1.6.5 livekit-plugins-silero==1.6.5" (.ci/run)
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
EXTRA_REQUIREMENTS="${EXTRA_REQUIREMENTS:-}"
STAMP="$VENV/.livekit-filler-pyproject.sha256"
want="$( (cat pyproject.toml; echo "$EXTRA_REQUIREMENTS") | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
    # shellcheck disable=SC2086  # EXTRA_REQUIREMENTS is a list of specifiers
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --group dev -e . \
        $EXTRA_REQUIREMENTS
    echo "$want" > "$STAMP"
fi
PY="$VENV/bin/python"
