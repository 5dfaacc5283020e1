#!/usr/bin/env bash
# Fetch the dashboard's front-end libraries from the npm registry (exact versions from
# package-lock.json) and copy the built files where `flotilla updates serve` serves them.
# Nothing is vendored in git: node_modules/ and static/vendor/ are ignored.
set -euo pipefail
cd "$(dirname "$0")/../src/flotilla/updates/server/dashboard"
command -v npm >/dev/null || { echo "dashboard-assets: npm is missing (Debian package npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
mkdir -p static/vendor
cp node_modules/chart.js/dist/chart.umd.min.js static/vendor/chart.umd.min.js
cp node_modules/chart.js/LICENSE.md static/vendor/chart.js.LICENSE.md
echo "dashboard-assets: chart.js $(node -p 'require("./node_modules/chart.js/package.json").version') in static/vendor/"
