// Package examples holds ways to run a replicar group, and the test that
// keeps them valid. It contains no library code.
//
//   - demo/: the program behind `make run`, a local 3-node group of real
//     processes (nats-server, redis-server, bin/replicar) with a leader
//     kill and the failover shown as it happens; `make stop` stops it.
//   - compose/docker-compose.yml: a 3-node group with Docker Compose,
//     built from the Dockerfile at the repository root.
//   - kubernetes/replicar-redis.yaml: replicar as a sidecar next to Redis
//     in a StatefulSet, with its probes, ports and configuration.
//
// examples_test.go checks what can be checked without Docker or a cluster:
// the files parse, each node's REPLICAR_* configuration (with the image's
// own ENV) is one replicar accepts, and build targets, service names,
// ports and probes agree with each other.
package examples
