{{/* Chart name. */}}
{{- define "autoguardrails.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "autoguardrails.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "autoguardrails.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "autoguardrails.selectorLabels" -}}
app.kubernetes.io/name: {{ include "autoguardrails.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "autoguardrails.labels" -}}
helm.sh/chart: {{ include "autoguardrails.chart" . }}
{{ include "autoguardrails.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: autoguardrails
{{- end }}

{{- define "autoguardrails.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "autoguardrails.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The cluster id written into IAM ownership tags. */}}
{{- define "autoguardrails.clusterId" -}}
{{- default (printf "%s-%s" .Release.Namespace .Release.Name) .Values.controller.clusterId }}
{{- end }}

{{- define "autoguardrails.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Label matchers for alert expressions. */}}
{{- define "autoguardrails.alertSelector" -}}
{{- default (printf "job=\"%s-metrics\"" (include "autoguardrails.fullname" .)) .Values.prometheusRule.selector }}
{{- end }}

{{- /*
  The rules the controller needs in every namespace it watches (least privilege; README.md
  "RBAC" explains each line). No delete anywhere: Quarantines are removed by their owner
  (garbage collection) or by people; the controller only removes its own finalizer.
*/}}
{{- define "autoguardrails.watchRules" -}}
# GuardrailPolicies: read, and write their status (JSON merge patch on /status).
- apiGroups: ["autoguardrails.io"]
  resources: ["guardrailpolicies"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["autoguardrails.io"]
  resources: ["guardrailpolicies/status"]
  verbs: ["patch"]
# Quarantines: created by server-side apply (a patch that the API server also authorizes as
# create), annotations cleared and the finalizer added/removed with patches on the object itself
# (so no /finalizers grant), status written with merge patches on /status. No update, no delete.
- apiGroups: ["autoguardrails.io"]
  resources: ["quarantines"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["autoguardrails.io"]
  resources: ["quarantines/status"]
  verbs: ["patch"]
# Events: kube-runtime's Recorder creates events.k8s.io/v1 Events and patches a series.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  {{- if .Values.dashboard.enabled }}
  # list: the dashboard shows a quarantine's Events (read-only).
  verbs: ["create", "patch", "list"]
  {{- else }}
  verbs: ["create", "patch"]
  {{- end }}
{{- with .Values.rbac.slackWebhookSecretNames }}
# Slack webhook Secrets referenced by policies: get by name only.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
{{- end }}
