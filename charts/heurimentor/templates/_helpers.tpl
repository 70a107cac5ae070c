{{- define "heurimentor.labels" -}}
app.kubernetes.io/part-of: heurimentor
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "heurimentor.operator.name" -}}
{{ .Release.Name }}-operator
{{- end -}}

{{- define "heurimentor.operator.selector" -}}
app.kubernetes.io/name: heurimentor-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
