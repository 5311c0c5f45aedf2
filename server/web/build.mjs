// Builds the web app into $MITZO_WEB_OUT (default ./dist): hashed JS/CSS
// under assets/, index.html, the service worker with the shell list baked
// in, the manifest and icons, and a .gz and .br beside every text file so
// mitzod serves them precompressed.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { brotliCompressSync, constants, deflateSync, gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

// PNG's CRC-32 (ISO 3309, reflected polynomial 0xEDB88320), here rather than
// zlib.crc32 so the build runs on Node 18 (zlib.crc32 came in 20.15/22.2).
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const out = process.env.MITZO_WEB_OUT || "dist";
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, "assets"), { recursive: true });
mkdirSync(join(out, "icons"), { recursive: true });

const app = await esbuild.build({
  entryPoints: ["src/main.tsx"],
  bundle: true,
  minify: true,
  format: "esm",
  splitting: true,
  target: ["es2020", "chrome100", "safari15", "firefox100"],
  jsx: "automatic",
  jsxImportSource: "preact",
  outdir: join(out, "assets"),
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});
const outputs = Object.keys(app.metafile.outputs).map((p) => "/" + relative(out, p));
const entry = Object.entries(app.metafile.outputs).find(([, o]) => o.entryPoint === "src/main.tsx");
const js = entry && "/" + relative(out, entry[0]);
const chunks = outputs.filter((p) => p.endsWith(".js") && p !== js);
// Chunks the entry imports statically: fetch them with it, not after it.
const preload = (entry ? entry[1].imports : []).filter((i) => i.kind === "import-statement").map((i) => "/" + relative(out, i.path));
const css = outputs.find((p) => p.endsWith(".css"));
if (!js || !css) throw new Error(`build produced no JS or CSS: ${outputs.join(", ")}`);

writeFileSync(
  join(out, "index.html"),
  `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="color-scheme" content="light dark">
<meta name="theme-color" content="#1f5fbf">
<meta name="referrer" content="no-referrer">
<title>mitzod</title>
<link rel="manifest" href="/manifest.webmanifest">
<link rel="icon" href="/icons/icon.svg" type="image/svg+xml">
<link rel="apple-touch-icon" href="/icons/icon-192.png">
<link rel="stylesheet" href="${css}">
${preload.map((p) => `<link rel="modulepreload" href="${p}">\n`).join("")}<script type="module" src="${js}"></script>
</head>
<body>
<div id="app"></div>
<noscript>mitzod's page needs JavaScript.</noscript>
</body>
</html>
`,
);

writeFileSync(
  join(out, "manifest.webmanifest"),
  JSON.stringify(
    {
      name: "mitzod",
      short_name: "mitzod",
      description: "Supervise your coding-agent sessions",
      start_url: "/",
      scope: "/",
      display: "standalone",
      background_color: "#141414",
      theme_color: "#1f5fbf",
      icons: [
        { src: "/icons/icon-192.png", sizes: "192x192", type: "image/png" },
        { src: "/icons/icon-512.png", sizes: "512x512", type: "image/png" },
        { src: "/icons/icon-512.png", sizes: "512x512", type: "image/png", purpose: "maskable" },
        { src: "/icons/icon.svg", sizes: "any", type: "image/svg+xml" },
      ],
    },
    null,
    2,
  ),
);

writeFileSync(join(out, "icons", "icon.svg"), readFileSync("public/icon.svg"));
for (const size of [192, 512]) writeFileSync(join(out, "icons", `icon-${size}.png`), icon(size));

const shell = ["/", js, ...chunks, css, "/manifest.webmanifest", "/icons/icon.svg", "/icons/icon-192.png", "/icons/icon-512.png"];
const version = createHash("sha256").update(shell.join("\n")).digest("hex").slice(0, 12);
await esbuild.build({
  entryPoints: ["src/sw.ts"],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  outfile: join(out, "sw.js"),
  define: { SHELL: JSON.stringify(shell), VERSION: JSON.stringify(version) },
  logLevel: "warning",
});

// Precompress.
for (const file of walk(out)) {
  if (!/\.(js|css|html|webmanifest|svg|json)$/.test(file)) continue;
  const data = readFileSync(file);
  if (data.length < 256) continue;
  writeFileSync(file + ".gz", gzipSync(data, { level: 9 }));
  writeFileSync(
    file + ".br",
    brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length } }),
  );
}
const report = walk(out)
  .filter((f) => f.endsWith(".js.br") || f.endsWith(".css.br"))
  .map((f) => `${relative(out, f)} ${statSync(f).size} B`);
console.log(`web app built into ${out}: ${report.join(", ")}`);

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

// A plain PNG icon (the brand square with a white "M" bar shape), drawn
// here so the build needs no image tools.
function icon(size) {
  const px = Buffer.alloc((size * 4 + 1) * size);
  const r = size * 0.19;
  for (let y = 0; y < size; y++) {
    px[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      const i = y * (size * 4 + 1) + 1 + x * 4;
      const cx = Math.min(x, size - 1 - x), cy = Math.min(y, size - 1 - y);
      const inside = cx >= r || cy >= r || (r - cx) ** 2 + (r - cy) ** 2 <= r * r;
      const u = x / size, v = y / size;
      const m = v > 0.31 && v < 0.72 && ((u > 0.25 && u < 0.36) || (u > 0.64 && u < 0.75) || (Math.abs(u - 0.5) < 0.06 + (0.72 - v) * 0.0 && v < 0.55 && Math.abs(u - 0.5) > (0.55 - v) * 0.6 - 0.06 && Math.abs(u - 0.5) < (0.55 - v) * 0.6 + 0.06));
      const [cr, cg, cb] = m ? [255, 255, 255] : [31, 95, 191];
      px[i] = cr; px[i + 1] = cg; px[i + 2] = cb; px[i + 3] = inside ? 255 : 0;
    }
  }
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0); ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk("IHDR", ihdr), chunk("IDAT", deflateSync(px)), chunk("IEND", Buffer.alloc(0))]);
}

