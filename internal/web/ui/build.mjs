// Bundles the dashboard into ../dist (embedded by the Go server with go:embed):
//   src/main.js (+ uPlot and its CSS, src/style.css) -> ../dist/app.js, ../dist/app.css
//   src/index.html                                  -> ../dist/index.html
// Usage: npm run build
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');

const uplot = JSON.parse(await readFile(join(here, 'node_modules', 'uplot', 'package.json'), 'utf8'));

await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.js')],
  outfile: join(dist, 'app.js'), // CSS imported by the JS lands in app.css beside it
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  legalComments: 'eof',
  // uPlot's copyright header is a plain comment, which minifying drops
  banner: { js: `/*! uPlot v${uplot.version} (c) Leon Sorokin, ${uplot.license} License, https://github.com/leeoniya/uPlot */`, css: `/*! uPlot v${uplot.version} (c) Leon Sorokin, ${uplot.license} License */` },
  logLevel: 'warning',
});
await copyFile(join(here, 'src', 'index.html'), join(dist, 'index.html'));

for (const f of ['index.html', 'app.js', 'app.css']) {
  const p = join(dist, f);
  console.log(`${relative(process.cwd(), p)}  ${((await stat(p)).size / 1024).toFixed(1)} KiB`);
}
