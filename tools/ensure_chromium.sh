#!/usr/bin/env bash
# `make test`'s first step. The browser tests drive Debian's chromium (Playwright's own browser download cannot work
# on the test machines); without it a long run would end in two tracebacks. So: install it where we may (root on
# Debian, as CI runs), else stop before anything else with one line saying how.
set -uo pipefail

# tests/test_browser.py launches the same path.
chromium=${CODEFORMER_CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "make test: installing Debian's chromium for the browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null && [ -x "$chromium" ] && exit 0
fi

echo "make test: the browser tests need Debian's package chromium at $chromium: install it with" \
  "\`sudo apt-get install chromium\` (or set CODEFORMER_CHROMIUM to a Chromium binary)" >&2
exit 1
