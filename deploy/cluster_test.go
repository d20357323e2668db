package deploy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"

	api "github.com/proglog/proglog/api/v1"
	"github.com/proglog/proglog/loadbalance"
	"github.com/proglog/proglog/server/tlsconfig"
	"github.com/proglog/proglog/test/testnet"
)

// Deadlines of the cluster test.
const (
	readyTimeout = 60 * time.Second
	callTimeout  = 30 * time.Second
)

// localPod is one pod of the rendered StatefulSet, run as a local process:
// its DNS name mapped to a loopback address, its volumes to directories.
type localPod struct {
	name, ip string
	dir      string
	args     []string
	env      []string
	logFile  string

	mu     sync.Mutex // guards cmd and exited
	cmd    *exec.Cmd
	exited chan struct{}
}

// localCluster is the rendered release run locally.
type localCluster struct {
	t         *testing.T
	bin       string
	m         manifests
	namespace string
	fullname  string
	// dnsToIP maps each pod's DNS name, and the client Service's, to a
	// loopback address.
	dnsToIP map[string]string
	// secrets are the Secrets `make gencert-kube` says to create: name →
	// key → file.
	secrets map[string]map[string]string
	pods    []*localPod
	// serverCert is the certificate `make gencert-kube` made for the nodes.
	serverCert *x509.Certificate
}

// TestChartRunsAsLocalCluster renders the chart, maps each pod's DNS name to
// an address 127.x.y.(i+1), and runs the rendered command line of pods 0, 1
// and 2 as local proglog processes, with the Secret that `make gencert-kube`
// makes and the rendered ACL ConfigMap as their files. They must form a
// cluster the way the pods would: ready by the rendered readiness probe,
// pod 0 the bootstrap, every node in the Raft configuration under its
// advertised address, a produce/consume round trip through the proglog:///
// resolver, and the helm test pod's command line passing. Then the scale
// down Kubernetes does: SIGTERM to the highest ordinal, which leaves Raft
// and exits within the grace period; back up on the same data (a retained
// volume), where it rejoins and catches up; and a restart of pod 0, as a
// rolling update does, which must rejoin rather than bootstrap again.
func TestChartRunsAsLocalCluster(t *testing.T) {
	const replicas = 3
	prefix := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), 1+rand.IntN(250))
	var ips []string
	for i := range replicas {
		ips = append(ips, prefix+strconv.Itoa(i+1))
	}
	ports := testnet.FreePortsOn(t, ips, 3)
	r := release{name: "proglog", namespace: "logs", set: []string{
		"replicas=" + strconv.Itoa(replicas),
		"ports.rpc=" + strconv.Itoa(ports[0]), "ports.http=" + strconv.Itoa(ports[1]), "ports.serf=" + strconv.Itoa(ports[2]),
	}}
	c := &localCluster{t: t, bin: proglogBinary(t), m: decodeManifests(t, render(t, r)), namespace: r.namespace,
		fullname: "proglog", dnsToIP: map[string]string{}}
	sts := c.m.statefulSet(t)
	require.Equal(t, c.fullname, sts.Name)
	podDomain := sts.Spec.ServiceName + "." + c.namespace + ".svc.cluster.local"
	for i, ip := range ips {
		c.dnsToIP[fmt.Sprintf("%s-%d.%s", c.fullname, i, podDomain)] = ip
	}
	// The client Service sends a client to some ready pod: pod 0 here.
	c.dnsToIP[c.fullname+"."+c.namespace+".svc.cluster.local"] = ips[0]
	c.makeSecrets(ips)

	for i, ip := range ips {
		c.pods = append(c.pods, c.preparePod(i, ip))
	}
	// podManagementPolicy: Parallel starts every pod at once.
	for _, p := range c.pods {
		c.start(p)
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.pods {
		c.waitReady(p)
	}

	client := c.client(ips)
	c.requireServers(client, c.pods)
	want := []string{"first", "second", "third"}
	for i, v := range want {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		off, err := client.Produce(ctx, []byte(v))
		cancel()
		require.NoError(t, err, "produce %q", v)
		require.Equal(t, uint64(i), off)
	}
	for i, v := range want {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		rec, err := client.Consume(ctx, uint64(i))
		cancel()
		require.NoError(t, err, "consume %d", i)
		require.Equal(t, v, string(rec.GetValue()))
	}
	c.runTestPod()

	// Scale down to 2: Kubernetes stops the highest ordinal with SIGTERM.
	last := c.pods[replicas-1]
	grace := time.Duration(*sts.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	require.Equal(t, 0, c.stop(last, grace), "%s exits cleanly within the grace period; log:\n%s", last.name, c.logTail(last))
	c.requireServers(client, c.pods[:replicas-1])
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	off, err := client.Produce(ctx, []byte("fourth"))
	cancel()
	require.NoError(t, err, "two of three nodes still write")
	want = append(want, "fourth")
	require.Equal(t, uint64(len(want)-1), off)

	// Scale back up to 3: the pod starts again on its retained volume.
	c.start(last)
	c.waitReady(last)
	c.requireServers(client, c.pods)
	c.requireRecords(last, want)

	// A rolling update restarts pod 0 too: with Raft state it does not
	// bootstrap again, and it has nobody to join but the members it
	// remembers.
	first := c.pods[0]
	require.Equal(t, 0, c.stop(first, grace), "%s exits cleanly within the grace period; log:\n%s", first.name, c.logTail(first))
	c.start(first)
	c.waitReady(first)
	c.requireServers(client, c.pods)
	ctx, cancel = context.WithTimeout(context.Background(), callTimeout)
	off, err = client.Produce(ctx, []byte("fifth"))
	cancel()
	require.NoError(t, err)
	want = append(want, "fifth")
	require.Equal(t, uint64(len(want)-1), off)
	c.requireRecords(first, want)
}

// kubectlSecret matches the Secret commands `make gencert-kube` prints.
var kubectlSecret = regexp.MustCompile(`kubectl -n (\S+) create secret generic (\S+)((?: --from-file=\S+)+)`)

// makeSecrets runs `make gencert-kube` for the release, into a fresh config
// directory, with the loopback addresses as extra names, and reads the
// Secrets it tells the user to create.
func (c *localCluster) makeSecrets(ips []string) {
	t := c.t
	t.Helper()
	configDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-C", repoRoot, "--no-print-directory", "gencert-kube",
		"CONFIG_DIR="+configDir, "NAME="+c.fullname, "NAMESPACE="+c.namespace, "EXTRA_HOSTS="+strings.Join(ips, ","))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "make gencert-kube: %s", out)
	c.secrets = map[string]map[string]string{}
	for _, m := range kubectlSecret.FindAllStringSubmatch(string(out), -1) {
		require.Equal(t, c.namespace, m[1])
		files := map[string]string{}
		for _, f := range strings.Fields(m[3]) {
			key, path, ok := strings.Cut(strings.TrimPrefix(f, "--from-file="), "=")
			require.True(t, ok, "--from-file=KEY=PATH: %s", f)
			files[key] = path
		}
		c.secrets[m[2]] = files
	}
	require.Len(t, c.secrets, 3, "make gencert-kube prints the server, client and gossip key Secrets:\n%s", out)

	// The nodes' certificate holds every pod's DNS name and the client
	// Service's: the names the pods advertise and clients dial.
	server, ok := c.secrets[volume(t, c.m.statefulSet(t).Spec.Template.Spec, "tls").Secret.SecretName]
	require.True(t, ok, "make gencert-kube makes the Secret the pods mount")
	data, err := os.ReadFile(server["tls.crt"])
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	c.serverCert, err = x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	for name := range c.dnsToIP {
		require.NoError(t, c.serverCert.VerifyHostname(name), "the server certificate holds %s", name)
	}
}

// varRef is a $(VAR) reference, which Kubernetes expands in a container's
// command, args and env from the container's environment.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// preparePod turns pod i of the rendered StatefulSet into a local command
// line: environment from the pod spec (downward API fields filled in as the
// kubelet would), $(VAR) expanded, DNS names mapped to addresses, and every
// container path mapped to a directory holding what Kubernetes would mount
// there.
func (c *localCluster) preparePod(i int, ip string) *localPod {
	t := c.t
	t.Helper()
	sts := c.m.statefulSet(t)
	spec := sts.Spec.Template.Spec
	node := container(t, spec, "proglog")
	p := &localPod{name: fmt.Sprintf("%s-%d", sts.Name, i), ip: ip, dir: t.TempDir()}
	p.logFile = filepath.Join(p.dir, "node.log")

	// The image: its entry point is the binary under test, its ENV the
	// defaults the pod starts with.
	_, stages := parseDockerfile(t)
	runtime := stages[len(stages)-1]
	require.Equal(t, []string{`["` + node.Command[0] + `"]`}, runtime.all("ENTRYPOINT"), "the chart runs the image's binary")
	env := map[string]string{}
	var envOrder []string
	setEnv := func(k, v string) {
		if _, ok := env[k]; !ok {
			envOrder = append(envOrder, k)
		}
		env[k] = v
	}
	for _, e := range runtime.all("ENV") {
		for _, kv := range strings.Fields(e) {
			k, v, _ := strings.Cut(kv, "=")
			setEnv(k, v)
		}
	}
	for _, e := range node.Env {
		switch {
		case e.ValueFrom == nil:
			setEnv(e.Name, varRef.ReplaceAllStringFunc(e.Value, func(ref string) string { return env[ref[2:len(ref)-1]] }))
		case e.ValueFrom.FieldRef != nil:
			fields := map[string]string{"metadata.name": p.name, "metadata.namespace": c.namespace, "status.podIP": ip}
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			require.True(t, ok, "env %s: the test knows no field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			setEnv(e.Name, v)
		default:
			t.Fatalf("env %s: the test cannot fill %+v", e.Name, e.ValueFrom)
		}
	}
	expand := func(s string) string {
		return varRef.ReplaceAllStringFunc(s, func(ref string) string {
			if v, ok := env[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref // Kubernetes leaves an unknown reference as it is
		})
	}

	// Volumes: each mount becomes a directory with what Kubernetes would
	// put there.
	mounts := map[string]string{"/etc/proglog": filepath.Join(p.dir, "etc")} // the image's PROGLOG_CONFIG_DIR
	for _, vm := range node.VolumeMounts {
		dir := filepath.Join(p.dir, vm.Name)
		require.NoError(t, os.MkdirAll(dir, 0o700))
		mounts[vm.MountPath] = dir
		c.fillVolume(spec, vm.Name, dir)
	}
	remap := func(s string) string {
		paths := make([]string, 0, len(mounts))
		for mp := range mounts {
			paths = append(paths, mp)
		}
		sort.Slice(paths, func(a, b int) bool { return len(paths[a]) > len(paths[b]) })
		for _, mp := range paths {
			s = strings.ReplaceAll(s, mp, mounts[mp])
		}
		return s
	}
	for _, k := range envOrder {
		p.env = append(p.env, k+"="+remap(env[k]))
	}
	p.env = append(p.env, "HOME="+p.dir, "PATH="+os.Getenv("PATH"))

	// The advertised name is the pod's DNS name, which the certificate
	// holds, before it is mapped to an address.
	requireFlag(t, node.Args, "advertise-host")
	for _, a := range node.Args {
		a = expand(a)
		if host, ok := strings.CutPrefix(a, "--advertise-host="); ok {
			require.NoError(t, c.serverCert.VerifyHostname(host), "pod %s advertises %s", p.name, host)
			require.Contains(t, c.dnsToIP, host, "pod %s advertises its DNS name", p.name)
		}
		p.args = append(p.args, remap(c.mapDNS(a)))
	}
	return p
}

// mapDNS replaces the pods' and the client Service's DNS names in s with
// their addresses, and fails on any other cluster name left in it.
func (c *localCluster) mapDNS(s string) string {
	names := make([]string, 0, len(c.dnsToIP))
	for n := range c.dnsToIP {
		names = append(names, n)
	}
	sort.Slice(names, func(a, b int) bool { return len(names[a]) > len(names[b]) })
	for _, n := range names {
		s = strings.ReplaceAll(s, n, c.dnsToIP[n])
	}
	require.NotContains(c.t, s, ".svc", "a cluster DNS name the test does not know: %s", s)
	return s
}

// fillVolume writes into dir what volume name of spec holds: a Secret from
// `make gencert-kube`, a rendered ConfigMap, or nothing (a claim: the pod's
// data).
func (c *localCluster) fillVolume(spec corev1.PodSpec, name, dir string) {
	t := c.t
	t.Helper()
	for _, pvc := range c.m.statefulSet(t).Spec.VolumeClaimTemplates {
		if pvc.Name == name {
			return
		}
	}
	v := volume(t, spec, name)
	files := map[string][]byte{}
	var items []corev1.KeyToPath
	switch {
	case v.Secret != nil:
		secret, ok := c.secrets[v.Secret.SecretName]
		require.True(t, ok, "volume %s: Secret %s is none that make gencert-kube makes", name, v.Secret.SecretName)
		for key, path := range secret {
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			files[key] = data
		}
		items = v.Secret.Items
	case v.ConfigMap != nil:
		for key, data := range c.m.configMap(t, v.ConfigMap.Name).Data {
			files[key] = []byte(data)
		}
		items = v.ConfigMap.Items
	default:
		t.Fatalf("volume %s: the test knows Secrets, ConfigMaps and claims only", name)
	}
	if items == nil {
		for key := range files {
			items = append(items, corev1.KeyToPath{Key: key, Path: key})
		}
	}
	for _, it := range items {
		data, ok := files[it.Key]
		require.True(t, ok, "volume %s has no key %s", name, it.Key)
		require.NoError(t, os.WriteFile(filepath.Join(dir, it.Path), data, 0o600))
	}
}

func (c *localCluster) start(p *localPod) {
	c.t.Helper()
	log, err := os.OpenFile(p.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(c.t, err)
	cmd := exec.Command(c.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(c.t, cmd.Start(), "start %s", p.name)
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
}

// stop sends SIGTERM, as the kubelet does, and returns the exit code; past
// grace it kills the process and fails the test.
func (c *localCluster) stop(p *localPod, grace time.Duration) int {
	c.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return 0
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return cmd.ProcessState.ExitCode()
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-exited
		c.t.Errorf("%s did not stop within %v of SIGTERM; log:\n%s", p.name, grace, c.logTail(p))
		return -1
	}
}

// stopAll stops every pod at once, as deleting the release does.
func (c *localCluster) stopAll() {
	var wg sync.WaitGroup
	for _, p := range c.pods {
		wg.Go(func() { c.stop(p, time.Minute) })
	}
	wg.Wait()
	if c.t.Failed() {
		for _, p := range c.pods {
			c.t.Logf("log of %s:\n%s", p.name, c.logTail(p))
		}
	}
}

func (c *localCluster) logTail(p *localPod) string {
	data, _ := os.ReadFile(p.logFile)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls the pod's rendered readiness probe as the kubelet does:
// HTTPS without verifying the certificate.
func (c *localCluster) waitReady(p *localPod) {
	t := c.t
	t.Helper()
	node := container(t, c.m.statefulSet(t).Spec.Template.Spec, "proglog")
	probe := node.ReadinessProbe.HTTPGet
	url := fmt.Sprintf("%s://%s/%s", strings.ToLower(string(probe.Scheme)),
		net.JoinHostPort(p.ip, portNumber(t, node, probe.Port)), strings.TrimPrefix(probe.Path, "/"))
	httpClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify either
	}}
	deadline := time.Now().Add(readyTimeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		p.mu.Lock()
		exited := p.exited
		p.mu.Unlock()
		select {
		case <-exited:
			t.Fatalf("%s exited while starting; log:\n%s", p.name, c.logTail(p))
		default:
		}
		resp, err := httpClient.Get(url)
		if err == nil {
			body := make([]byte, 256)
			n, _ := resp.Body.Read(body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body[:n])
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond) // the kubelet's probe period, shortened
	}
	t.Fatalf("%s not ready within %v (%s: %s); log:\n%s", p.name, readyTimeout, url, last, c.logTail(p))
}

// clientTLS is the client certificate of the Secret `make gencert-kube`
// makes for clients.
func (c *localCluster) clientTLS(serverName string) *tls.Config {
	t := c.t
	t.Helper()
	files := c.secrets[c.fullname+"-client-tls"]
	require.NotNil(t, files, "client Secret")
	cfg, err := tlsconfig.SetupTLSConfig(tlsconfig.Config{
		CertFile: files["tls.crt"], KeyFile: files["tls.key"], CAFile: files["ca.crt"], ServerAddress: serverName,
	})
	require.NoError(t, err)
	return cfg
}

// client is a balancing client seeded with every pod, as the client Service
// would lead it to them.
func (c *localCluster) client(ips []string) *loadbalance.Client {
	t := c.t
	t.Helper()
	rpcPort := requireFlag(t, container(t, c.m.statefulSet(t).Spec.Template.Spec, "proglog").Args, "rpc-port")
	var seeds []string
	for _, ip := range ips {
		seeds = append(seeds, net.JoinHostPort(ip, rpcPort))
	}
	client, err := loadbalance.New(loadbalance.Config{Seeds: seeds, TLSConfig: c.clientTLS("")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// requireServers waits until the cluster lists exactly pods, each at its
// advertised address, with one leader.
func (c *localCluster) requireServers(client *loadbalance.Client, pods []*localPod) {
	t := c.t
	t.Helper()
	rpcPort := requireFlag(t, container(t, c.m.statefulSet(t).Spec.Template.Spec, "proglog").Args, "rpc-port")
	want := map[string]string{}
	for _, p := range pods {
		want[p.name] = net.JoinHostPort(p.ip, rpcPort)
	}
	last := "no answer"
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		servers, err := client.GetServers(ctx)
		cancel()
		if err != nil {
			last = err.Error()
			continue
		}
		got, leaders := map[string]string{}, 0
		for _, s := range servers {
			got[s.GetId()] = s.GetRpcAddr()
			if s.GetIsLeader() {
				leaders++
			}
		}
		if leaders == 1 && fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		last = fmt.Sprintf("%v with %d leaders", got, leaders)
	}
	t.Fatalf("servers: want %v with one leader; last: %s", want, last)
}

// requireRecords reads every record from pod p itself.
func (c *localCluster) requireRecords(p *localPod, want []string) {
	t := c.t
	t.Helper()
	rpcPort := requireFlag(t, container(t, c.m.statefulSet(t).Spec.Template.Spec, "proglog").Args, "rpc-port")
	conn, err := grpc.NewClient(net.JoinHostPort(p.ip, rpcPort), grpc.WithTransportCredentials(credentials.NewTLS(c.clientTLS(p.ip))))
	require.NoError(t, err)
	defer conn.Close()
	log := api.NewLogClient(conn)
	for off, v := range want {
		require.Eventually(t, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := log.Consume(ctx, &api.ConsumeRequest{Offset: uint64(off)})
			return err == nil && string(res.GetRecord().GetValue()) == v
		}, readyTimeout, 100*time.Millisecond, "%s serves offset %d = %q", p.name, off, v)
	}
}

// runTestPod runs the helm test pod's command line, with the client Service
// mapped to a pod and the client Secret as its files: it must pass.
func (c *localCluster) runTestPod() {
	t := c.t
	t.Helper()
	require.Len(t, c.m.pods, 1, "the helm test pod")
	pod := c.m.pods[0]
	ctr := container(t, pod.Spec, "servers")
	dir := t.TempDir()
	mounts := map[string]string{}
	for _, vm := range ctr.VolumeMounts {
		d := filepath.Join(dir, vm.Name)
		require.NoError(t, os.MkdirAll(d, 0o700))
		mounts[vm.MountPath] = d
		c.fillVolume(pod.Spec, vm.Name, d)
	}
	var args []string
	for _, a := range ctr.Args {
		a = c.mapDNS(a)
		for mp, d := range mounts {
			a = strings.ReplaceAll(a, mp, d)
		}
		args = append(args, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = []string{"HOME=" + dir}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helm test pod: proglog %s: %s", strings.Join(args, " "), out)
	for _, p := range c.pods {
		require.Contains(t, string(out), p.name)
	}
}
