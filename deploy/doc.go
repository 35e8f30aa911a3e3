// Package deploy holds the deployment files of hfcache: a systemd unit
// (systemd/), a Dockerfile for a static binary in an empty image, Kubernetes
// manifests (kubernetes/), and a Compose file of three nodes behind nginx
// (compose.yaml, nginx/). README.md says how to use each. There is no Go
// code here; deploy_test.go checks the files, without a container engine:
//
//   - every YAML file parses (all documents), and the manifests hang
//     together: replicas and --bootstrap-expect, --join through the headless
//     Service, the selectors of the Services, the PodDisruptionBudget and the
//     NetworkPolicy, probe ports and paths, Secret references, the Compose
//     nodes and the nginx upstream over them;
//   - every --flag and HFCACHE_* variable the files use is one `hfcache
//     serve` has (parsed from its --help), and no secret is passed as a flag;
//   - the Dockerfile's `go build` line, parsed from the Dockerfile, builds a
//     static, stripped binary with the version stamped in;
//   - the probe paths of the StatefulSet answer 200 on a running node without
//     the admin token, and the node exits 0 soon after SIGTERM;
//   - `systemd-analyze verify` accepts the unit and `nginx -t` the nginx
//     configuration (each skipped, saying why, where the tool is missing or
//     cannot run).
package deploy
