{{/*
Shared pieces. Object names are fixed (aim-detector, aim-matcher, ...), as in the kustomize
bundle: the install is one per cluster (cluster-scoped CRDs, RBAC and admission policy, labels on
every Node), and the node fence, the matcher's Role and the docs name these objects.
*/}}

{{/* The label every object of the install carries (daemonset/kustomization.yaml). */}}
{{- define "aim.partOf" -}}
app.kubernetes.io/part-of: aim-accelerator
{{- end }}

{{/* Labels of an agent's objects: (dict "name" "aim-detector" "component" "detector"). */}}
{{- define "aim.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/component: {{ .component }}
{{- with .instance }}
app.kubernetes.io/instance: {{ . }}
{{- end }}
{{ include "aim.partOf" . }}
{{- end }}

{{/* The image's tag: image.tag, else the chart's appVersion. */}}
{{- define "aim.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The image of both programs: repository:tag, or repository@digest when a digest is set. */}}
{{- define "aim.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ include "aim.tag" . }}
{{- end }}
{{- end }}

{{/* The amdsmi image (built WITH_AMDSMI=true): its own repository/tag, else <tag>-amdsmi. */}}
{{- define "aim.amdsmiImage" -}}
{{- $amdsmi := .Values.detector.amdsmi -}}
{{ $amdsmi.repository | default .Values.image.repository }}:{{ $amdsmi.tag | default (printf "%s-amdsmi" (include "aim.tag" .)) }}
{{- end }}

{{/* imagePullSecrets of a pod spec, when any. */}}
{{- define "aim.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The peers that may scrape the metrics ports. Never empty: a NetworkPolicy rule with no
peers admits everyone. */}}
{{- define "aim.metricsFrom" -}}
{{- if not .Values.networkPolicy.metricsFrom }}
{{- fail "networkPolicy.metricsFrom is empty: it would admit everyone to the metrics ports; list Prometheus's namespace, or set networkPolicy.enabled=false" }}
{{- end }}
{{- toYaml .Values.networkPolicy.metricsFrom }}
{{- end }}
