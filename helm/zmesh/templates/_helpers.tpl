{{/* Name of the chart, or nameOverride. */}}
{{- define "zmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every resource name: "<release>-zmesh", shortened to leave room for suffixes. */}}
{{- define "zmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "zmesh.directory.name" -}}{{ include "zmesh.fullname" . }}-directory{{- end -}}
{{- define "zmesh.directory.peers" -}}{{ include "zmesh.fullname" . }}-directory-peers{{- end -}}
{{- define "zmesh.proxy.name" -}}{{ include "zmesh.fullname" . }}-proxy{{- end -}}

{{- define "zmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "zmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component ("directory" or "proxy"): pass (list $ "directory"). */}}
{{- define "zmesh.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "zmesh.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "zmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The number of replicas that bootstrap the cluster. */}}
{{- define "zmesh.directory.initialClusterSize" -}}
{{- $size := int .Values.directory.initialClusterSize -}}
{{- if le $size 0 -}}{{- $size = int .Values.directory.replicas -}}{{- end -}}
{{- $size -}}
{{- end -}}

{{/* The directory replicas' gRPC addresses by their stable DNS names, comma-separated. */}}
{{- define "zmesh.directory.addresses" -}}
{{- $name := include "zmesh.directory.name" . -}}
{{- $domain := printf "%s.%s.svc.%s" (include "zmesh.directory.peers" .) .Release.Namespace .Values.clusterDomain -}}
{{- $addresses := list -}}
{{- range $i := until (int .Values.directory.replicas) -}}
{{- $addresses = append $addresses (printf "%s-%d.%s:%d" $name $i $domain (int $.Values.directory.ports.grpc)) -}}
{{- end -}}
{{- join "," $addresses -}}
{{- end -}}

{{/* Checks on the values that would otherwise give a broken cluster. */}}
{{- define "zmesh.validate" -}}
{{- $replicas := int .Values.directory.replicas -}}
{{- if or (lt $replicas 1) (eq (mod $replicas 2) 0) -}}
{{- fail (printf "directory.replicas must be an odd number (3 or 5), not %d: Raft needs a majority" $replicas) -}}
{{- end -}}
{{- if gt (int (include "zmesh.directory.initialClusterSize" .)) $replicas -}}
{{- fail "directory.initialClusterSize cannot be larger than directory.replicas" -}}
{{- end -}}
{{- if not (has .Values.directory.antiAffinity (list "hard" "soft" "none")) -}}
{{- fail "directory.antiAffinity must be hard, soft or none" -}}
{{- end -}}
{{- end -}}
