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
//              "steps": ["info", "list", "downloadInfo", "download", "snapshot", "toCacheDir"]}]
// }
//
// Prints one JSON document on stdout with what every step returned; the Go
// test compares it (and the files written) with the fake Hub's content.
// Any client error fails the process with the error printed as JSON.
import { readFile, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
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
const common = { hubUrl: plan.hubUrl, ...(plan.accessToken ? { accessToken: plan.accessToken } : {}) };
const result = { repos: [] };

try {
  for (const r of plan.repos) {
    const repo = { type: r.type, name: r.name };
    const out = { type: r.type, name: r.name, revision: r.revision };
    const steps = new Set(r.steps);
    let files = r.files;

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
      for (const p of files) {
        const blob = await downloadFile({ ...common, repo, path: p, revision: r.revision });
        if (!blob) {
          out.download[p] = null;
          continue;
        }
        const dest = path.join(plan.outDir, r.type, r.name, p);
        await mkdir(path.dirname(dest), { recursive: true });
        await writeFile(dest, Buffer.from(await blob.arrayBuffer()));
        out.download[p] = dest;
      }
    }
    if (steps.has("snapshot")) {
      out.snapshot = await snapshotDownload({ ...common, repo, revision: r.revision, cacheDir: plan.cacheDir });
    }
    if (steps.has("toCacheDir")) {
      out.toCacheDir = {};
      for (const p of files) {
        out.toCacheDir[p] = await downloadFileToCacheDir({ ...common, repo, path: p, revision: r.revision, cacheDir: plan.cacheDir });
      }
    }
    result.repos.push(out);
  }
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err?.message ?? err), name: err?.name, status: err?.statusCode ?? null }) + "\n");
  process.exit(1);
}
process.stdout.write(JSON.stringify(result) + "\n");
