// What `jupyter labextension build .` does, without JupyterLab in the build environment:
// @jupyterlab/builder's build-labextension, given the core package metadata of
// @jupyterlab/core-meta (copied to a package.json, the name the builder reads).
// Usage: node build.js [--development]
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const modules = path.join(__dirname, 'node_modules');
const core = fs.mkdtempSync(path.join(os.tmpdir(), 'colab-guard-core-'));
try {
  fs.copyFileSync(
    path.join(modules, '@jupyterlab', 'core-meta', 'core.package.json'),
    path.join(core, 'package.json')
  );
  const builder = path.join(modules, '@jupyterlab', 'builder', 'lib', 'build-labextension.js');
  const args = [builder, '--core-path', core, ...process.argv.slice(2), __dirname];
  execFileSync(process.execPath, args, { stdio: 'inherit', cwd: __dirname });
} finally {
  fs.rmSync(core, { recursive: true, force: true });
}
