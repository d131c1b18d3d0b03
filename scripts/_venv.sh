# Sourced by the scripts: creates the virtualenv on first use and sets $PY.
VENV="${VENV:-.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25.1"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --group dev -e .
fi
PY="$VENV/bin/python"
