{{/* The chart's name, and the full name every object is called (the Service too). */}}
{{- define "hindsight.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hindsight.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "hindsight.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "hindsight.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hindsight.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hindsight.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hindsight.labels" -}}
{{ include "hindsight.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "hindsight.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hindsight.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hindsight.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The serving certificate's Secret. */}}
{{- define "hindsight.tlsSecretName" -}}
{{- if eq .Values.tls.source "secret" -}}
{{- required "tls.secret.name is required when tls.source is secret" .Values.tls.secret.name -}}
{{- else -}}
{{- printf "%s-serving-cert" (include "hindsight.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* --retention-size: the value, or 80 % of persistence.size (in Mi). */}}
{{- define "hindsight.retentionSize" -}}
{{- if .Values.retentionSize -}}
{{- .Values.retentionSize -}}
{{- else -}}
{{- $size := toString .Values.persistence.size -}}
{{- $mi := 0 -}}
{{- range $unit, $factor := dict "Mi" 1 "Gi" 1024 "Ti" 1048576 -}}
{{- if hasSuffix $unit $size -}}{{- $mi = mul (trimSuffix $unit $size | int64) $factor -}}{{- end -}}
{{- end -}}
{{- if le (int64 $mi) 0 -}}
{{- fail (printf "persistence.size %q: want a whole number of Mi, Gi or Ti (e.g. 10Gi) to derive retentionSize, or set retentionSize" $size) -}}
{{- end -}}
{{- printf "%dMi" (div (mul $mi 8) 10) -}}
{{- end -}}
{{- end -}}

{{/* The DNS names the aggregator and in-cluster clients reach the Service by. */}}
{{- define "hindsight.serviceNames" -}}
{{- $svc := include "hindsight.fullname" . -}}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson -}}
{{- end -}}

{{/* The API groups and versions registered with the aggregator. */}}
{{- define "hindsight.apiServices" -}}
{{- $l := list (dict "group" "metrics.k8s.io" "version" "v1" "priority" 200) (dict "group" "metrics.k8s.io" "version" "v1beta1" "priority" 100) -}}
{{- if .Values.apiService.historyGroups -}}
{{- $l = append $l (dict "group" "history.hindsight.dev" "version" "v1" "priority" 100) -}}
{{- $l = append $l (dict "group" "prometheus.hindsight.dev" "version" "v1" "priority" 100) -}}
{{- end -}}
{{- toJson $l -}}
{{- end -}}
