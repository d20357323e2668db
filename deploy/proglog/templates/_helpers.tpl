{{/*
Names. The client Service is <fullname>; the headless Service that gives every pod its DNS name is
<fullname>-headless; pod i is <fullname>-i and is reached at <fullname>-i.<fullname>-headless.<namespace>.svc.<clusterDomain>.
*/}}
{{- define "proglog.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "proglog.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "proglog.headlessName" -}}
{{- printf "%s-headless" (include "proglog.fullname" .) }}
{{- end }}

{{/* The DNS domain of the headless Service: pod i is <fullname>-i.<this>. */}}
{{- define "proglog.podDomain" -}}
{{- printf "%s.%s.svc.%s" (include "proglog.headlessName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "proglog.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "proglog.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "proglog.clientTLSSecretName" -}}
{{- default (printf "%s-client-tls" (include "proglog.fullname" .)) .Values.tls.clientSecretName }}
{{- end }}

{{- define "proglog.gossipSecretName" -}}
{{- default (printf "%s-gossip" (include "proglog.fullname" .)) .Values.gossip.keySecret }}
{{- end }}

{{- define "proglog.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The names every node's server certificate must hold: each pod's DNS name (a wildcard under the headless
Service, so that scaling up needs no new certificate) and the client Service's names (clients dial it first).
*/}}
{{- define "proglog.dnsNames" -}}
{{- $fullname := include "proglog.fullname" . -}}
{{- $ns := .Release.Namespace -}}
- {{ printf "*.%s" (include "proglog.podDomain" .) | quote }}
- {{ printf "*.%s.%s.svc" (include "proglog.headlessName" .) $ns | quote }}
- {{ $fullname | quote }}
- {{ printf "%s.%s" $fullname $ns | quote }}
- {{ printf "%s.%s.svc" $fullname $ns | quote }}
- {{ printf "%s.%s.svc.%s" $fullname $ns .Values.clusterDomain | quote }}
- "localhost"
{{- range .Values.tls.extraDNSNames }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{- define "proglog.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "proglog.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "proglog.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proglog.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Where the pod mounts its files. */}}
{{- define "proglog.tlsDir" -}}/etc/proglog/tls{{- end }}
{{- define "proglog.aclDir" -}}/etc/proglog/acl{{- end }}
{{- define "proglog.gossipDir" -}}/etc/proglog/gossip{{- end }}
{{- define "proglog.dataDir" -}}/var/lib/proglog{{- end }}
