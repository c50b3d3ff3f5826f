{{/* Names, labels and shared fragments of the guideline-ingest chart. */}}

{{- define "gi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name: the release name, plus the chart name unless the
release name already contains it. */}}
{{- define "gi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries (Kubernetes' recommended app.kubernetes.io/* set). */}}
{{- define "gi.labels" -}}
helm.sh/chart: {{ include "gi.chart" . }}
app.kubernetes.io/name: {{ include "gi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: guideline-ingest
{{- end -}}

{{/* Labels of one component's objects: include with (dict "ctx" $ "component" "api"). */}}
{{- define "gi.componentLabels" -}}
{{ include "gi.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The immutable subset used in selectors. */}}
{{- define "gi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gi.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "gi.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "gi.postgresql.image" -}}
{{- $img := .Values.postgresql.image -}}
{{- if $img.digest -}}
{{- printf "%s:%s@%s" $img.repository $img.tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository $img.tag -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount names. */}}
{{- define "gi.sa.api" -}}
{{- default (printf "%s-api" (include "gi.fullname" .)) .Values.serviceAccounts.api.name -}}
{{- end -}}
{{- define "gi.sa.operator" -}}
{{- default (printf "%s-operator" (include "gi.fullname" .)) .Values.serviceAccounts.operator.name -}}
{{- end -}}
{{- define "gi.sa.runner" -}}
{{- default (printf "%s-runner" (include "gi.fullname" .)) .Values.serviceAccounts.runner.name -}}
{{- end -}}

{{/* The ConfigMap whose keys become runner env (the operator's runner_config_map). */}}
{{- define "gi.runnerConfigMap" -}}
{{- printf "%s-runner-config" (include "gi.fullname" .) -}}
{{- end -}}

{{/* The Secret and key holding the OpenAI key, or "" when none is configured. */}}
{{- define "gi.openaiSecret" -}}
{{- if .Values.openai.existingSecret -}}
{{- .Values.openai.existingSecret -}}
{{- else -}}
{{- printf "%s-openai" (include "gi.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "gi.openaiSecretKey" -}}
{{- if .Values.openai.existingSecret -}}{{ .Values.openai.existingSecretKey }}{{- else -}}api-key{{- end -}}
{{- end -}}
{{- define "gi.openaiConfigured" -}}
{{- if or .Values.openai.apiKey .Values.openai.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* The runner's provider: explicit, else openai when a key or an endpoint is configured,
else extractive. */}}
{{- define "gi.runnerProvider" -}}
{{- if .Values.runner.provider -}}
{{- .Values.runner.provider -}}
{{- else if or (include "gi.openaiConfigured" .) .Values.openai.baseUrl -}}
openai
{{- else -}}
extractive
{{- end -}}
{{- end -}}

{{/* Where the database URL comes from. */}}
{{- define "gi.inChartPostgresql" -}}
{{- if and .Values.postgresql.enabled (not .Values.database.url) (not .Values.database.existingSecret) -}}true{{- end -}}
{{- end -}}
{{- define "gi.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else if include "gi.inChartPostgresql" . -}}
{{- include "gi.postgresql.fullname" . -}}
{{- else -}}
{{- printf "%s-database" (include "gi.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "gi.databaseSecretKey" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecretKey }}{{- else -}}database-url{{- end -}}
{{- end -}}
{{- define "gi.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "gi.fullname" .) -}}
{{- end -}}

{{/* The in-chart PostgreSQL's password: the value, else the one already in the cluster
(kept across upgrades), else a new random one. */}}
{{- define "gi.postgresql.password" -}}
{{- if .Values.postgresql.auth.password -}}
{{- .Values.postgresql.auth.password -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "gi.postgresql.fullname" .) -}}
{{- if and $existing $existing.data (index $existing.data "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "gi.apiKeysSecret" -}}
{{- if .Values.api.apiKeys.existingSecret -}}
{{- .Values.api.apiKeys.existingSecret -}}
{{- else -}}
{{- printf "%s-api-keys" (include "gi.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "gi.peeringName" -}}
{{- default (include "gi.fullname" .) .Values.operator.peering.name -}}
{{- end -}}

{{/* Pod-level securityContext and imagePullSecrets shared by the chart's pods. */}}
{{- define "gi.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The env entries of the database URL. With the in-chart PostgreSQL's password in an
existing Secret the URL carries no password and libpq takes it from PGPASSWORD (any
character works; nothing is pasted into a URL). */}}
{{- define "gi.databaseEnv" -}}
{{- $pg := .Values.postgresql -}}
{{- if and (include "gi.inChartPostgresql" .) $pg.auth.existingSecret -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg.auth.existingSecret }}
      key: {{ $pg.auth.existingSecretPasswordKey }}
- name: GUIDELINE_DATABASE_URL
  value: {{ printf "postgresql://%s@%s:5432/%s" $pg.auth.username (include "gi.postgresql.fullname" .) $pg.auth.database | quote }}
{{- else -}}
- name: GUIDELINE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "gi.databaseSecret" . }}
      key: {{ include "gi.databaseSecretKey" . }}
{{- end -}}
{{- end -}}

{{/* The Secret and key of the in-chart PostgreSQL's password. */}}
{{- define "gi.postgresql.secret" -}}
{{- default (include "gi.postgresql.fullname" .) .Values.postgresql.auth.existingSecret -}}
{{- end -}}
{{- define "gi.postgresql.secretKey" -}}
{{- if .Values.postgresql.auth.existingSecret -}}{{ .Values.postgresql.auth.existingSecretPasswordKey }}{{- else -}}password{{- end -}}
{{- end -}}

{{/* The ConfigMap the operator mounts: what it adds to every runner pod. */}}
{{- define "gi.runnerPodConfigMap" -}}
{{- printf "%s-runner-pod" (include "gi.fullname" .) -}}
{{- end -}}

{{/* Its content (operator/guideline_operator/podtemplate.py reads it). */}}
{{/* OpenTelemetry env entries (a list) of the API, the operator and the runner pods: empty
while tracing.otlpEndpoint is. */}}
{{- define "gi.tracingEnvList" -}}
{{- $env := list -}}
{{- with .Values.tracing.otlpEndpoint -}}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" .) -}}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_PROTOCOL" "value" "http/protobuf") -}}
{{- range $name, $value := $.Values.tracing.env -}}
{{- $env = append $env (dict "name" $name "value" ($value | toString)) -}}
{{- end -}}
{{- end -}}
{{- dict "env" $env | toJson -}}
{{- end -}}

{{- define "gi.tracingEnv" -}}
{{- with (include "gi.tracingEnvList" . | fromJson).env }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{- define "gi.runnerPodTemplate" -}}
{{- $r := .Values.runner -}}
{{- $tracing := (include "gi.tracingEnvList" . | fromJson).env -}}
{{- $secrets := list -}}
{{- range .Values.imagePullSecrets }}{{ if . }}{{ $secrets = append $secrets (dict "name" .) }}{{ end }}{{ end -}}
{{- $spec := dict "imagePullSecrets" $secrets "nodeSelector" $r.nodeSelector "tolerations" $r.tolerations "affinity" $r.affinity "priorityClassName" $r.priorityClassName -}}
{{- dict "annotations" $r.podAnnotations "spec" $spec "resources" $r.resources "env" (concat $tracing $r.extraEnv) | toPrettyJson -}}
{{- end -}}

{{/* Names of cluster-scoped objects: unique per release *and* namespace, since a release
of the same name may exist in another namespace. */}}
{{- define "gi.clusterName" -}}
{{- printf "%s-%s" (include "gi.fullname" .) .Release.Namespace | trunc 200 | trimSuffix "-" -}}
{{- end -}}

{{/* Fail early on settings that cannot work together. */}}
{{- define "gi.validate" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.database.url) (not .Values.database.existingSecret) -}}
{{- fail "no database: set database.url or database.existingSecret, or postgresql.enabled=true" -}}
{{- end -}}
{{- if and .Values.openai.apiKey .Values.openai.existingSecret -}}
{{- fail "set openai.apiKey or openai.existingSecret, not both" -}}
{{- end -}}
{{- if and (eq (include "gi.runnerProvider" .) "openai") (not (include "gi.openaiConfigured" .)) (not .Values.openai.baseUrl) -}}
{{- fail "runner.provider=openai needs openai.apiKey, openai.existingSecret or openai.baseUrl" -}}
{{- end -}}
{{- if and .Values.postgresql.auth.password .Values.postgresql.auth.existingSecret -}}
{{- fail "set postgresql.auth.password or postgresql.auth.existingSecret, not both" -}}
{{- end -}}
{{- if and .Values.api.apiKeys.hashes .Values.api.apiKeys.existingSecret -}}
{{- fail "set api.apiKeys.hashes or api.apiKeys.existingSecret, not both" -}}
{{- end -}}
{{- end -}}

{{/*
The API's URL as runner pods reach it: runner.apiUrl, else the API Service's in-cluster
name (fully qualified: runner pods may run in other namespaces than the release's).
*/}}
{{- define "gi.runnerApiUrl" -}}
{{- if .Values.runner.apiUrl -}}
{{- .Values.runner.apiUrl -}}
{{- else -}}
{{- printf "http://%s-api.%s.svc:%v" (include "gi.fullname" .) .Release.Namespace .Values.api.service.port -}}
{{- end -}}
{{- end -}}
