// Downloads one file through an hfcache endpoint with the real
// @huggingface/hub client and reports timings and the sha256 of the bytes
// it got. The bench (test/bench, phase XET) runs it once per measurement.
//
// Usage: node xetbench.mjs --hub URL --repo ORG/NAME --path FILE --mode xet|plain
//                          [--type model] [--revision main] [--token T] [--trace 1]
//
//   --mode xet    downloadFile(...) as is: a XetBlob (token route,
//                 v2 reconstruction, multi-range xorb GETs, chunk decode in JS)
//   --mode plain  downloadFile({xet: false}): a WebBlob, one plain GET
//
// The Blob is streamed into a hash (blob.stream()); nothing is held whole
// in memory or written to disk. Prints one JSON line on stdout:
//
//   {"mode","blob","size","bytes","sha256","infoMs","ttfbMs","totalMs",
//    "cpuUserMs","cpuSysMs","maxRssMiB","requests","tokenMs","reconMs",
//    "firstXorbMs"[,"trace"]}
//
// All times are ms from the start (before fileDownloadInfo): infoMs when
// fileDownloadInfo returned; ttfbMs when the Blob's stream gave its first
// bytes (for xet: after the token, the reconstruction and the first term's
// chunks, which the client yields only once a whole term is decoded);
// totalMs when the last byte was hashed. tokenMs / reconMs: response headers
// of the token and reconstruction requests; firstXorbMs: start of the first
// xorb GET (null in plain mode). --trace 1 adds every request
// (path, start, hdr, status).
// On error it prints {"error": "..."} and exits 1.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { downloadFile, fileDownloadInfo } from "@huggingface/hub";

// The process's peak RSS: VmHWM (ru_maxrss would include the parent's RSS
// at exec time, which getrusage keeps across execve).
function peakRssMiB() {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) {
      return Number(m[1]) / 1024;
    }
  } catch {}
  return process.resourceUsage().maxRSS / 1024;
}

function args(argv) {
  const out = { type: "model", revision: "main", mode: "xet" };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (!k.startsWith("--") || i + 1 >= argv.length) {
      throw new Error(`bad argument ${k}`);
    }
    out[k.slice(2)] = argv[++i];
  }
  for (const k of ["hub", "repo", "path"]) {
    if (!out[k]) {
      throw new Error(`--${k} is required`);
    }
  }
  if (out.mode !== "xet" && out.mode !== "plain") {
    throw new Error(`--mode must be xet or plain, not ${out.mode}`);
  }
  return out;
}

try {
  const a = args(process.argv.slice(2));
  const common = {
    hubUrl: a.hub,
    repo: { type: a.type, name: a.repo },
    path: a.path,
    revision: a.revision,
    ...(a.token ? { accessToken: a.token } : {}),
  };
  // Every request the client sends, with the time its headers arrived.
  const reqs = [];
  const tracedFetch = async (input, init) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    const rec = { path: url.pathname, start: performance.now() - t0 };
    reqs.push(rec);
    const resp = await fetch(input, init);
    rec.hdr = performance.now() - t0;
    rec.status = resp.status;
    return resp;
  };
  common.fetch = tracedFetch;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const info = await fileDownloadInfo(common);
  const tInfo = performance.now();
  if (!info) {
    throw new Error(`${a.repo}/${a.path}: not found`);
  }
  if (a.mode === "xet" && !info.xet) {
    throw new Error(`${a.repo}/${a.path}: the endpoint did not advertise Xet (no X-Xet-Hash / Link)`);
  }
  const blob = await downloadFile({ ...common, downloadInfo: info, ...(a.mode === "plain" ? { xet: false } : {}) });
  const hash = createHash("sha256");
  let bytes = 0;
  let tFirst = 0;
  for await (const chunk of blob.stream()) {
    if (!tFirst && chunk.byteLength) {
      tFirst = performance.now();
    }
    hash.update(chunk);
    bytes += chunk.byteLength;
  }
  const tEnd = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const res = {
    mode: a.mode,
    blob: blob.constructor.name,
    size: info.size,
    bytes,
    sha256: hash.digest("hex"),
    infoMs: tInfo - t0,
    ttfbMs: (tFirst || tEnd) - t0,
    totalMs: tEnd - t0,
    cpuUserMs: cpu.user / 1000,
    cpuSysMs: cpu.system / 1000,
    maxRssMiB: peakRssMiB(),
    requests: reqs.length,
    // xet: headers of the token and the reconstruction, start of the first xorb GET
    tokenMs: reqs.find((r) => r.path.includes("xet-read-token"))?.hdr ?? null,
    reconMs: reqs.find((r) => r.path.includes("/reconstructions/"))?.hdr ?? null,
    firstXorbMs: reqs.find((r) => r.path.includes("/xorb"))?.start ?? null,
    ...(a.trace ? { trace: reqs } : {}),
  };
  process.stdout.write(JSON.stringify(res) + "\n");
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err?.stack ?? err) }) + "\n");
  process.exit(1);
}
