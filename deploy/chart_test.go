package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/proglog/proglog/agent"
)

// defaultRelease is `helm install proglog deploy/proglog` in the default
// namespace.
var defaultRelease = release{name: "proglog", namespace: "default"}

// customRelease sets every value a user is likely to change, and more.
func customRelease(t *testing.T) release {
	t.Helper()
	values := filepath.Join(t.TempDir(), "values.yaml")
	require.NoError(t, os.WriteFile(values, []byte(`
replicas: 5
fullnameOverride: logs
clusterDomain: corp.example
image: {repository: registry.example/proglog, tag: "1.2.3", pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
ports: {rpc: 9401, http: 9443, serf: 9301}
logLevel: debug
maxRecordBytes: 4194304
extraArgs: ["--max-batch-records=5000", "--trace-exporter=otlp", "--otlp-endpoint=collector:4317"]
extraEnv: [{name: OTEL_SERVICE_NAME, value: proglog}]
tls:
  secretName: logs-server
  clientSecretName: logs-client
  extraDNSNames: [logs.example.com]
  certManager:
    enabled: true
    clientCommonName: admin
acl:
  policy: |
    p, admin, *, produce
    p, admin, *, consume
    p, reporting, *, consume
persistence:
  size: 20Gi
  storageClassName: fast-ssd
  retention: {whenScaled: Delete, whenDeleted: Delete}
resources:
  requests: {cpu: "1", memory: 1Gi}
  limits: {cpu: "2", memory: 2Gi}
terminationGracePeriodSeconds: 90
metrics:
  podAnnotations: false
  serviceMonitor: {enabled: true, labels: {release: prometheus}, interval: 15s}
service:
  type: LoadBalancer
  annotations: {service.beta.kubernetes.io/aws-load-balancer-internal: "true"}
podAnnotations: {team: logs}
podLabels: {tier: data}
nodeSelector: {disktype: ssd}
tolerations: [{key: dedicated, operator: Equal, value: logs, effect: NoSchedule}]
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {app.kubernetes.io/name: proglog}}
tests: {enabled: false}
`), 0o600))
	return release{name: "prod", namespace: "streaming", valuesFiles: []string{values}}
}

func TestHelmLint(t *testing.T) {
	for name, r := range map[string]release{"default": defaultRelease, "custom": customRelease(t)} {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", r.namespace}
			for _, f := range r.valuesFiles {
				args = append(args, "--values", f)
			}
			res := runHelm(t, args...)
			require.NoError(t, res.err, "helm lint:\n%s\n%s", res.stdout, res.stderr)
			require.Contains(t, res.stdout, "1 chart(s) linted, 0 chart(s) failed")
		})
	}
}

// TestValuesSchemaRefusesMistakes: a misspelt key, a value of the wrong
// type or out of range fails at install, naming what is wrong, instead of
// being silently ignored.
func TestValuesSchemaRefusesMistakes(t *testing.T) {
	for _, tt := range []struct{ set, want string }{
		{set: "replica=5", want: "'replica' not allowed"},
		{set: "persistence.sise=2Gi", want: "'sise' not allowed"},
		{set: "tls.certManager.enable=true", want: "'enable' not allowed"},
		{set: "replicas=0", want: "replicas"},
		{set: "ports.rpc=70000", want: "rpc"},
		{set: "logLevel=verbose", want: "logLevel"},
		{set: "persistence.retention.whenScaled=Keep", want: "whenScaled"},
		{set: "extraArgs={-v}", want: "extraArgs"},
		{set: "terminationGracePeriodSeconds=5", want: "terminationGracePeriodSeconds"},
		{set: "gossip.key=not-a-key!", want: "key"},
		{set: "gossip.insecur=true", want: "'insecur' not allowed"},
	} {
		t.Run(tt.set, func(t *testing.T) {
			r := defaultRelease
			r.set = []string{tt.set}
			res := runHelm(t, r.templateArgs()...)
			require.Error(t, res.err, "helm template --set %s succeeded", tt.set)
			require.Contains(t, res.stderr, "values don't meet the specifications of the schema")
			require.Contains(t, res.stderr, tt.want)
		})
	}
}

// TestDefaultRelease checks the objects of `helm install proglog` against
// what the chart promises.
func TestDefaultRelease(t *testing.T) {
	m := decodeManifests(t, render(t, defaultRelease))
	sts := m.statefulSet(t)
	require.Equal(t, "proglog", sts.Name)
	require.Equal(t, int32(3), *sts.Spec.Replicas)
	// Pods start together: after a full stop, pod 0 cannot be ready (it has
	// no leader) until the others are back.
	require.Equal(t, appsv1.ParallelPodManagement, sts.Spec.PodManagementPolicy)
	require.Equal(t, appsv1.RollingUpdateStatefulSetStrategyType, sts.Spec.UpdateStrategy.Type)
	require.Equal(t, appsv1.RetainPersistentVolumeClaimRetentionPolicyType, sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled)
	require.Equal(t, appsv1.RetainPersistentVolumeClaimRetentionPolicyType, sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted)
	requirePodsSelected(t, sts)

	// A volume per pod, mounted where the node keeps its data.
	require.Len(t, sts.Spec.VolumeClaimTemplates, 1)
	pvc := sts.Spec.VolumeClaimTemplates[0]
	require.Equal(t, "1Gi", pvc.Spec.Resources.Requests.Storage().String())
	node := container(t, sts.Spec.Template.Spec, "proglog")
	require.Equal(t, requireFlag(t, node.Args, "data-dir"), mountPath(t, node, pvc.Name))

	// Long enough for a graceful stop: leave Raft, then finish calls.
	require.Greater(t, time.Duration(*sts.Spec.Template.Spec.TerminationGracePeriodSeconds)*time.Second,
		agent.DefaultLeaveTimeout+agent.DefaultShutdownTimeout)

	// Resources and security.
	require.False(t, node.Resources.Requests.Cpu().IsZero(), "cpu request")
	require.False(t, node.Resources.Requests.Memory().IsZero(), "memory request")
	require.False(t, node.Resources.Limits.Memory().IsZero(), "memory limit")
	pod := sts.Spec.Template.Spec
	require.True(t, *pod.SecurityContext.RunAsNonRoot)
	require.Equal(t, imageUser(t), *pod.SecurityContext.RunAsUser, "the image's user")
	require.Equal(t, imageUser(t), *pod.SecurityContext.FSGroup, "the volume is writable by the image's user")
	require.True(t, *node.SecurityContext.ReadOnlyRootFilesystem)
	require.False(t, *node.SecurityContext.AllowPrivilegeEscalation)

	// Probes over HTTPS on the node's HTTP port: alive = serving, ready =
	// has a leader.
	httpPort := requireFlag(t, node.Args, "http-port")
	for probe, path := range map[*corev1.Probe]string{
		node.ReadinessProbe: "/readyz", node.LivenessProbe: "/healthz", node.StartupProbe: "/healthz",
	} {
		require.NotNil(t, probe)
		require.Equal(t, path, probe.HTTPGet.Path)
		require.Equal(t, corev1.URISchemeHTTPS, probe.HTTPGet.Scheme)
		require.Equal(t, httpPort, portNumber(t, node, probe.HTTPGet.Port))
	}

	// Prometheus scrape annotations name the HTTPS port.
	ann := sts.Spec.Template.Annotations
	require.Equal(t, "true", ann["prometheus.io/scrape"])
	require.Equal(t, "https", ann["prometheus.io/scheme"])
	require.Equal(t, httpPort, ann["prometheus.io/port"])
	require.Equal(t, "/metrics", ann["prometheus.io/path"])
	require.NotEmpty(t, ann["checksum/acl"], "an ACL change restarts the pods")

	// TLS from the Secret, the ACL from the ConfigMap, which holds the
	// repository's ACL files.
	require.Equal(t, "proglog-tls", volume(t, pod, "tls").Secret.SecretName)
	acl := m.configMap(t, volume(t, pod, "acl").ConfigMap.Name)
	for key, file := range map[string]string{"model.conf": "model.conf", "policy.csv": "policy.csv"} {
		want, err := os.ReadFile(filepath.Join(repoRoot, "test", file))
		require.NoError(t, err)
		require.Equal(t, string(want), acl.Data[key], "values.yaml's acl is test/%s", file)
	}

	// Services: per-pod DNS names through the headless one, and a client one.
	headless := m.service(t, sts.Spec.ServiceName)
	require.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	require.True(t, headless.Spec.PublishNotReadyAddresses, "nodes find each other before they are ready")
	requireServicePorts(t, headless, node, "rpc", "http", "serf-tcp", "serf-udp")
	client := m.service(t, "proglog")
	require.NotEqual(t, corev1.ClusterIPNone, client.Spec.ClusterIP)
	require.False(t, client.Spec.PublishNotReadyAddresses, "clients reach ready nodes only")
	requireServicePorts(t, client, node, "rpc", "http")
	for _, svc := range []*corev1.Service{headless, client} {
		require.Equal(t, sts.Spec.Selector.MatchLabels, svc.Spec.Selector, "Service %s selects the pods", svc.Name)
	}

	// A majority stays up: 1 of 3 may be down.
	require.Len(t, m.pdbs, 1)
	require.Equal(t, intstr.FromInt32(1), *m.pdbs[0].Spec.MaxUnavailable)
	require.Equal(t, sts.Spec.Selector.MatchLabels, m.pdbs[0].Spec.Selector.MatchLabels)

	// helm test: a pod that lists the servers through the client Service.
	require.Len(t, m.pods, 1)
	require.Equal(t, "test", m.pods[0].Annotations["helm.sh/hook"])
	require.Empty(t, m.certificates, "cert-manager is off by default")
	require.Empty(t, m.monitors, "no ServiceMonitor by default")
}

// TestCustomRelease renders the chart with non-default values: each one
// reaches the objects, cert-manager's certificate names every pod, and the
// ServiceMonitor scrapes every pod with the client certificate.
func TestCustomRelease(t *testing.T) {
	m := decodeManifests(t, render(t, customRelease(t)))
	sts := m.statefulSet(t)
	require.Equal(t, "logs", sts.Name)
	require.Equal(t, "streaming", sts.Namespace)
	require.Equal(t, int32(5), *sts.Spec.Replicas)
	require.Equal(t, appsv1.DeletePersistentVolumeClaimRetentionPolicyType, sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled)
	pvc := sts.Spec.VolumeClaimTemplates[0]
	require.Equal(t, "20Gi", pvc.Spec.Resources.Requests.Storage().String())
	require.Equal(t, "fast-ssd", *pvc.Spec.StorageClassName)
	pod := sts.Spec.Template.Spec
	require.Equal(t, int64(90), *pod.TerminationGracePeriodSeconds)
	require.Equal(t, "ssd", pod.NodeSelector["disktype"])
	require.Len(t, pod.Tolerations, 1)
	require.Len(t, pod.TopologySpreadConstraints, 1)
	require.Equal(t, "regcred", pod.ImagePullSecrets[0].Name)
	require.Equal(t, "data", sts.Spec.Template.Labels["tier"])
	require.Equal(t, "logs", sts.Spec.Template.Annotations["team"])
	require.NotContains(t, sts.Spec.Template.Annotations, "prometheus.io/scrape")
	requirePodsSelected(t, sts)

	node := container(t, pod, "proglog")
	require.Equal(t, "registry.example/proglog:1.2.3", node.Image)
	require.Equal(t, corev1.PullAlways, node.ImagePullPolicy)
	require.Equal(t, "2", node.Resources.Limits.Cpu().String())
	for flag, want := range map[string]string{
		"rpc-port": "9401", "http-port": "9443", "bind-addr": "$(POD_IP):9301", "log-level": "debug",
		"max-record-bytes": "4194304", "max-batch-records": "5000", "trace-exporter": "otlp",
		"advertise-host":   "$(POD_NAME).logs-headless.streaming.svc.corp.example",
		"start-join-addrs": "logs-0.logs-headless.streaming.svc.corp.example:9301",
		"bootstrap-node":   "logs-0",
	} {
		require.Equal(t, want, requireFlag(t, node.Args, flag), "--%s", flag)
	}
	require.Equal(t, "logs-server", volume(t, pod, "tls").Secret.SecretName)
	require.Contains(t, m.configMap(t, "logs-acl").Data["policy.csv"], "p, reporting, *, consume")
	require.Equal(t, corev1.ServiceTypeLoadBalancer, m.service(t, "logs").Spec.Type)
	require.Equal(t, "true", m.service(t, "logs").Annotations["service.beta.kubernetes.io/aws-load-balancer-internal"])
	requireServicePorts(t, m.service(t, "logs"), node, "rpc", "http")
	require.Equal(t, intstr.FromInt32(2), *m.pdbs[0].Spec.MaxUnavailable, "2 of 5 may be down")
	require.Empty(t, m.pods, "tests.enabled=false")

	// cert-manager: a CA of the release's own, a server certificate for
	// every pod's DNS name and the client Service's, in the Secret the pods
	// mount, and a client certificate in the client Secret.
	certs := map[string]*certificate{}
	for _, c := range m.certificates {
		certs[c.Name] = c
	}
	require.Len(t, certs, 3)
	require.True(t, certs["logs-ca"].Spec.IsCA)
	server, client := certs["logs-server"], certs["logs-client"]
	require.Equal(t, "logs-server", server.Spec.SecretName)
	require.Equal(t, "logs-client", client.Spec.SecretName)
	require.Equal(t, "admin", client.Spec.CommonName)
	require.Contains(t, server.Spec.Usages, "server auth")
	require.Contains(t, server.Spec.Usages, "client auth", "a node shows its certificate to the peers it dials")
	require.Equal(t, issuerRef{Name: "logs-ca", Kind: "Issuer", Group: "cert-manager.io"}, server.Spec.IssuerRef)
	require.Len(t, m.issuers, 2)
	names := certNames(t, server.Spec.DNSNames)
	for i := range 7 { // more pods than replicas: scaling up needs no new certificate
		host := strings.ReplaceAll(requireFlag(t, node.Args, "advertise-host"), "$(POD_NAME)", "logs-"+strconv.Itoa(i))
		require.NoError(t, names.VerifyHostname(host), "the server certificate holds pod %d's name", i)
	}
	for _, host := range []string{"logs", "logs.streaming", "logs.streaming.svc", "logs.streaming.svc.corp.example", "logs.example.com"} {
		require.NoError(t, names.VerifyHostname(host), "the server certificate holds %s", host)
	}

	// The ServiceMonitor scrapes the headless Service's HTTPS port with the
	// client certificate, checking the server by a name it holds.
	require.Len(t, m.monitors, 1)
	sm := m.monitors[0]
	require.Equal(t, "prometheus", sm.Labels["release"])
	headless := m.service(t, sts.Spec.ServiceName)
	for k, v := range sm.Spec.Selector.MatchLabels {
		require.Equal(t, v, headless.Labels[k], "the ServiceMonitor selects the headless Service (label %s)", k)
	}
	require.NotEqual(t, "peers", m.service(t, "logs").Labels["app.kubernetes.io/component"], "and not the client Service too")
	require.Len(t, sm.Spec.Endpoints, 1)
	ep := sm.Spec.Endpoints[0]
	require.Equal(t, "http", ep.Port)
	requireServicePorts(t, headless, node, ep.Port)
	require.Equal(t, "/metrics", ep.Path)
	require.Equal(t, "logs-client", ep.TLSConfig.Cert.Secret.Name)
	require.Equal(t, "logs-client", ep.TLSConfig.KeySecret.Name)
	require.NoError(t, names.VerifyHostname(*ep.TLSConfig.ServerName))
}

// TestNotes renders NOTES.txt (helm template leaves it out, so a copy of the
// chart renders it into a ConfigMap) and checks what it tells the user.
func TestNotes(t *testing.T) {
	chart := filepath.Join(t.TempDir(), "proglog")
	require.NoError(t, os.CopyFS(chart, os.DirFS(chartDir)))
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(chart, "templates", "_notes_test.tpl"),
		[]byte(`{{- define "test.notes" -}}`+string(notes)+`{{- end }}`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(chart, "templates", "notes-test.yaml"), []byte(
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |\n{{ include \"test.notes\" . | indent 4 }}\n"), 0o600))
	renderNotes := func(set ...string) string {
		args := []string{"template", "prod", chart, "--namespace", "streaming", "--show-only", "templates/notes-test.yaml"}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		res := runHelm(t, args...)
		require.NoError(t, res.err, res.stderr)
		return res.stdout
	}
	out := renderNotes()
	require.Contains(t, out, "prod-proglog.streaming.svc.cluster.local:8401")
	require.Contains(t, out, "make gencert-kube NAME=prod-proglog NAMESPACE=streaming")
	require.Contains(t, out, "helm -n streaming test prod")
	out = renderNotes("tls.certManager.enabled=true", "ports.rpc=9401")
	require.Contains(t, out, "prod-proglog.streaming.svc.cluster.local:9401")
	require.NotContains(t, out, "gencert-kube")
}

func requirePodsSelected(t *testing.T, sts *appsv1.StatefulSet) {
	t.Helper()
	for k, v := range sts.Spec.Selector.MatchLabels {
		require.Equal(t, v, sts.Spec.Template.Labels[k], "pod label %s", k)
	}
}

// mountPath is where container c mounts volume name.
func mountPath(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.Name == name {
			return m.MountPath
		}
	}
	t.Fatalf("container %s does not mount %s", c.Name, name)
	return ""
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

// portNumber resolves a probe's or Service's port, by name or number, to
// the container's port number.
func portNumber(t *testing.T, c corev1.Container, port intstr.IntOrString) string {
	t.Helper()
	if port.Type == intstr.Int {
		return strconv.Itoa(port.IntValue())
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, port.StrVal)
	return ""
}

// requireServicePorts checks that svc has the named ports and that each
// reaches the container port of that name, whose number the node's flag
// says.
func requireServicePorts(t *testing.T, svc *corev1.Service, c corev1.Container, names ...string) {
	t.Helper()
	flags := map[string]string{"rpc": "rpc-port", "http": "http-port"}
	for _, name := range names {
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Name != name {
				continue
			}
			found = true
			target := portNumber(t, c, p.TargetPort)
			if flag, ok := flags[name]; ok {
				require.Equal(t, requireFlag(t, c.Args, flag), target, "Service %s port %s", svc.Name, name)
			} else {
				_, serfPort, _ := strings.Cut(requireFlag(t, c.Args, "bind-addr"), ":")
				require.Equal(t, serfPort, target, "Service %s port %s", svc.Name, name)
			}
		}
		require.True(t, found, "Service %s has port %s", svc.Name, name)
	}
}

// certNames returns a certificate holding dnsNames, to ask Go's own TLS name
// matching (wildcards included) whether a host is among them.
func certNames(t *testing.T, dnsNames []string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "names"}, DNSNames: dnsNames,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}
