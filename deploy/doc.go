// Package deploy holds no code of its own: its tests check what deploy/
// ships. deploy/Dockerfile builds the image with the Makefile's build
// (dockerfile_test.go); deploy/proglog is the Helm chart, rendered with a
// pinned helm (helm v3.22.0, built once per test run with the Go toolchain)
// and checked: helm lint, the values schema, every rendered object decoded
// strictly into its Kubernetes API type (objects_test.go), every flag the
// chart passes to proglog accepted by the binary (flags_test.go), and the
// rendered pods' command lines, started as local processes with their DNS
// names mapped to 127.x.y.z addresses, forming a working cluster that scales
// down and back up (cluster_test.go). run-local.sh, what `make run` runs, is
// tested by cmd/proglog.
package deploy
