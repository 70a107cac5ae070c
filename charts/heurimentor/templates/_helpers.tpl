{{- define "heurimentor.labels" -}}
app.kubernetes.io/part-of: heurimentor
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "heurimentor.operator.name" -}}
{{ .Release.Name }}-operator
{{- end -}}

{{- define "heurimentor.peeringName" -}}
{{ .Values.operator.peering.name | default (printf "%s-operator" .Release.Name) }}
{{- end -}}

{{- define "heurimentor.operator.selector" -}}
app.kubernetes.io/name: heurimentor-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* Selector labels of one component: (dict "root" $ "component" "dmu") */ -}}
{{- define "heurimentor.selector" -}}
app.kubernetes.io/name: heurimentor-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- /* "<registry>/<name>:<tag>" for an image block {name, tag}: (dict "root" $ "image" .Values.dmu.image) */ -}}
{{- define "heurimentor.image" -}}
{{- $tag := .image.tag | default .root.Values.images.tag | default .root.Chart.AppVersion -}}
{{ printf "%s/%s:%s" .root.Values.images.registry .image.name $tag }}
{{- end -}}

{{- define "heurimentor.pullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "heurimentor.tokensSecret" -}}
{{ .Values.tokens.existingSecret | default (printf "%s-tokens" .Release.Name) }}
{{- end -}}

{{- define "heurimentor.databaseSecret" -}}
{{- if eq .Values.database.mode "external" -}}
{{ .Values.database.external.existingSecret }}
{{- else -}}
{{ .Release.Name }}-database
{{- end -}}
{{- end -}}

{{- define "heurimentor.dmuUrlKey" -}}
{{ if eq .Values.database.mode "external" }}{{ .Values.database.external.dmuUrlKey }}{{ else }}dmu-url{{ end }}
{{- end -}}

{{- define "heurimentor.tsmUrlKey" -}}
{{ if eq .Values.database.mode "external" }}{{ .Values.database.external.tsmUrlKey }}{{ else }}tsm-url{{ end }}
{{- end -}}

{{- /*
A generated secret value that survives upgrades: the live Secret's value when there is one
(`lookup`; empty during `helm template`), else a new random one. Base64, for a Secret's data.
(dict "root" $ "secret" name "key" key)
*/ -}}
{{- define "heurimentor.keptSecret" -}}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $live $live.data (hasKey $live.data .key) -}}
{{ index $live.data .key }}
{{- else -}}
{{ randAlphaNum 48 | b64enc }}
{{- end -}}
{{- end -}}

{{- /* Pod and container security of every platform pod: non-root, nothing to escalate, read-only root. */ -}}
{{- define "heurimentor.podSecurity" -}}
securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: {type: RuntimeDefault}}
{{- end -}}

{{- define "heurimentor.containerSecurity" -}}
securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
{{- end -}}

{{- define "heurimentor.scrapeAnnotations" -}}
{{- if .root.Values.monitoring.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}
