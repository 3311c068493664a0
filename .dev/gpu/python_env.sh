# Sourced by the device scripts: makes deepinv and this checkout importable with $PY.
# On a device without deepinv, installs the wheels carried in .whl/ into /tmp/site.
if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1 && ! $PY -c "import deepinv" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
