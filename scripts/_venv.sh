# Sourced by the scripts: creates the virtualenv on first use, refreshes it when
# pyproject.toml changes, and sets $PY.
VENV="${VENV:-.venv}"
STAMP="$VENV/.livekit-filler-pyproject.sha256"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
fi
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --group dev -e .
    echo "$want" > "$STAMP"
fi
PY="$VENV/bin/python"
