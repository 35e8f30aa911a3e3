// Drives the real @huggingface/hub client against an hfcache endpoint.
//
// Usage: node hfclient.mjs plan.json
//
// plan.json: {
//   "hubUrl": "http://127.0.0.1:8080",
//   "accessToken": "optional",
//   "outDir": "/tmp/out",          // downloadFile results: outDir/<type>/<repo>/<path>
//   "cacheDir": "/tmp/hf-cache",   // snapshotDownload / downloadFileToCacheDir target
//   "repos": [{"type": "model", "name": "org/model", "revision": "main",
//              "steps": ["info", "list", "downloadInfo", "download", "snapshot", "toCacheDir"]}],
//   "logFetch": true               // optional: record every request the client makes
// }
//
// Per repo, optionally:
//   "files": [...]                 // the files to work on (else those listFiles found)
//   "xet": false                   // downloadFile/downloadFileToCacheDir/snapshotDownload with xet: false (plain HTTP)
//   "parallel": 16                 // "download" runs this many downloadFile calls per file at once
//   "accessToken": "..."           // this repo's token (overrides the plan's; "" for none)
//   "expectError": true            // a step's error is recorded in "error" instead of failing the run
//   steps may start with "waitTokenExpiry": wait (deadline poll on the clock)
//   until every Xet token the client was handed so far has expired.
//
// With logFetch, "fetches" lists {repo, method, url, status, tokenExp?}: the
// repo entry's index, and for the xet-read-token route the exp it returned.
//
// Prints one JSON document on stdout with what every step returned; the Go
// test compares it (and the files written) with the fake Hub's content.
// Any client error fails the process with the error printed as JSON.
import { readFile, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { createHash } from "node:crypto";
import {
  datasetInfo,
  downloadFile,
  downloadFileToCacheDir,
  fileDownloadInfo,
  listFiles,
  modelInfo,
  snapshotDownload,
} from "@huggingface/hub";

const plan = JSON.parse(await readFile(process.argv[2], "utf8"));
const result = { repos: [] };

// The fetch wrapper: records every request (URL, method, status) and, for
// the Xet token route, the expiry it handed out.
let phase = 0;
const fetches = [];
const tokenExps = [];
async function loggingFetch(input, init) {
  const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
  const method = init?.method ?? (input instanceof Request ? input.method : "GET");
  const entry = { repo: phase, method, url };
  fetches.push(entry);
  let resp;
  try {
    resp = await fetch(input, init);
  } catch (err) {
    entry.error = String(err?.message ?? err);
    throw err;
  }
  entry.status = resp.status;
  if (url.includes("/xet-read-token/") && resp.ok) {
    try {
        const j = await resp.clone().json();
        entry.tokenExp = j.exp;
        tokenExps.push(j.exp);
      } catch {}
    }
    return resp;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  try {
    for (const r of plan.repos) {
      const token = r.accessToken !== undefined ? r.accessToken : plan.accessToken;
      const common = {
        hubUrl: plan.hubUrl,
        ...(token ? { accessToken: token } : {}),
        ...(plan.logFetch ? { fetch: loggingFetch } : {}),
      };
      const xetOpt = r.xet === false ? { xet: false } : {};
      const repo = { type: r.type, name: r.name };
      const out = { type: r.type, name: r.name, revision: r.revision };
      const steps = new Set(r.steps);
      let files = r.files;
      if (steps.has("waitTokenExpiry")) {
        const until = Math.max(0, ...tokenExps);
        const deadline = Date.now() + 60_000;
        while (Date.now() / 1000 < until + 1) {
          if (Date.now() > deadline) throw new Error(`token exp ${until} not reached within 60s`);
          await sleep(50); // polling the clock
        }
        out.waitedUntil = until;
      }
      try {

      if (steps.has("info")) {
        const fn = r.type === "dataset" ? datasetInfo : modelInfo;
        const info = await fn({ ...common, name: r.name, revision: r.revision, additionalFields: ["sha"] });
        out.info = { id: info.id, sha: info.sha, private: info.private, gated: info.gated };
      }
      if (steps.has("list")) {
        out.list = [];
        for await (const f of listFiles({ ...common, repo, revision: r.revision, recursive: true })) {
          out.list.push({ type: f.type, path: f.path, size: f.size, oid: f.oid, lfs: f.lfs ?? null, xetHash: f.xetHash ?? null });
        }
        files ??= out.list.filter((f) => f.type === "file").map((f) => f.path);
      }
      if (steps.has("downloadInfo")) {
        out.downloadInfo = {};
        for (const p of files) {
          const info = await fileDownloadInfo({ ...common, repo, path: p, revision: r.revision });
          out.downloadInfo[p] = info ? { size: info.size, etag: info.etag, xet: info.xet ?? null } : null;
        }
      }
      if (steps.has("download")) {
        out.download = {};
        out.downloadSha = {};
        for (const p of files) {
          const n = r.parallel ?? 1;
          const blobs = await Promise.all(
            Array.from({ length: n }, async () => {
              const blob = await downloadFile({ ...common, ...xetOpt, repo, path: p, revision: r.revision });
              return blob ? Buffer.from(await blob.arrayBuffer()) : null;
            }),
          );
          if (!blobs[0]) {
            out.download[p] = null;
            continue;
          }
          out.downloadSha[p] = blobs.map((b) => (b ? createHash("sha256").update(b).digest("hex") : null));
          const dest = path.join(plan.outDir, r.type, r.name, p);
          await mkdir(path.dirname(dest), { recursive: true });
          await writeFile(dest, blobs[0]);
          out.download[p] = dest;
        }
      }
      if (steps.has("snapshot")) {
        out.snapshot = await snapshotDownload({ ...common, ...xetOpt, repo, revision: r.revision, cacheDir: plan.cacheDir });
      }
      if (steps.has("toCacheDir")) {
        out.toCacheDir = {};
        for (const p of files) {
          out.toCacheDir[p] = await downloadFileToCacheDir({ ...common, ...xetOpt, repo, path: p, revision: r.revision, cacheDir: plan.cacheDir });
        }
      }
    } catch (err) {
      if (!r.expectError) throw err;
      out.error = { message: String(err?.message ?? err), name: err?.name, status: err?.statusCode ?? null };
    }
    result.repos.push(out);
    phase++;
  }
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err?.message ?? err), name: err?.name, status: err?.statusCode ?? null, fetches }) + "\n");
  process.exit(1);
}
if (plan.logFetch) result.fetches = fetches;
process.stdout.write(JSON.stringify(result) + "\n");
