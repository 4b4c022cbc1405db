{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "machine-reconciler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, with the chart name added unless it already holds it.
Truncated to 63 characters (and 52 leaves room for suffixes such as "-headless").
*/}}
{{- define "machine-reconciler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "machine-reconciler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "machine-reconciler.labels" -}}
helm.sh/chart: {{ include "machine-reconciler.chart" . }}
{{ include "machine-reconciler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: machine-reconciler
{{- end }}

{{/* Labels that select the pods (immutable once deployed). */}}
{{- define "machine-reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "machine-reconciler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "machine-reconciler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "machine-reconciler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "machine-reconciler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret holding the token: an existing one, or the chart's. */}}
{{- define "machine-reconciler.tokenSecretName" -}}
{{- .Values.apiToken.existingSecret | default (include "machine-reconciler.fullname" .) }}
{{- end }}

{{- define "machine-reconciler.webhookSecretName" -}}
{{- .Values.alertWebhook.existingSecret | default (include "machine-reconciler.fullname" .) }}
{{- end }}

{{/* Whether the chart renders its own Secret (it holds only values given to the chart). */}}
{{- define "machine-reconciler.createSecret" -}}
{{- if or (and .Values.apiToken.value (not .Values.apiToken.existingSecret)) (and .Values.alertWebhook.url (not .Values.alertWebhook.existingSecret)) }}true{{ end }}
{{- end }}

{{- define "machine-reconciler.configMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-desired-state" (include "machine-reconciler.fullname" .)) }}
{{- end }}

{{/* The desired-state directory inside the container (the image's default CMD path). */}}
{{- define "machine-reconciler.desiredDir" -}}
/etc/machine-reconciler/desired
{{- end }}

{{- define "machine-reconciler.tokenDir" -}}
/var/run/secrets/machine-reconciler
{{- end }}

{{/* Seconds the pod gets to stop: the daemon's grace period plus time to release leases. */}}
{{- define "machine-reconciler.terminationGracePeriod" -}}
{{- add (int .Values.reconcile.gracePeriod) 30 }}
{{- end }}

{{/* The container's arguments (the image's ENTRYPOINT is `machine-reconciler`). */}}
{{- define "machine-reconciler.args" -}}
- run
- {{ include "machine-reconciler.desiredDir" . }}
- --health-bind
- {{ printf "%s:%v" .Values.health.bindAddress .Values.health.port | quote }}
- --interval
- {{ .Values.reconcile.interval | toString | quote }}
- --grace-period
- {{ .Values.reconcile.gracePeriod | toString | quote }}
- --lease-wait
- {{ .Values.reconcile.leaseWait | toString | quote }}
- --log-format
- {{ .Values.logFormat | quote }}
- --log-level
- {{ .Values.logLevel | quote }}
{{- if .Values.sharding.enabled }}
- --shard-index
- $(POD_INDEX)
- --shard-count
- {{ .Values.replicaCount | toString | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The container's environment. */}}
{{- define "machine-reconciler.env" -}}
- name: MACHINE_RECONCILER_API_URL
  value: {{ .Values.apiUrl | quote }}
{{- if eq .Values.apiToken.mountAs "file" }}
- name: MACHINE_RECONCILER_API_TOKEN_FILE
  value: {{ printf "%s/%s" (include "machine-reconciler.tokenDir" .) .Values.apiToken.key | quote }}
{{- else }}
- name: FLY_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "machine-reconciler.tokenSecretName" . }}
      key: {{ .Values.apiToken.key | quote }}
{{- end }}
{{- if or .Values.alertWebhook.url .Values.alertWebhook.existingSecret }}
- name: MACHINE_RECONCILER_ALERT_WEBHOOK_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "machine-reconciler.webhookSecretName" . }}
      key: {{ .Values.alertWebhook.key | quote }}
{{- end }}
{{- if not .Values.watch.enabled }}
- name: MACHINE_RECONCILER_WATCH
  value: "false"
{{- end }}
{{- if .Values.sharding.enabled }}
- name: POD_INDEX
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
{{- end }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- range $key, $value := .Values.settings }}
- name: {{ printf "MACHINE_RECONCILER_%s" ($key | upper) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod template shared by the Deployment and the StatefulSet. */}}
{{- define "machine-reconciler.podTemplate" -}}
metadata:
  labels:
    {{- include "machine-reconciler.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $annotations := dict }}
  {{- if and (not .Values.watch.enabled) (not .Values.existingConfigMap) }}
  {{- /* Watching is off: a desired-state change rolls the pod. */}}
  {{- $_ := set $annotations "checksum/desired-state" (include (print .Template.BasePath "/configmap.yaml") . | sha256sum) }}
  {{- end }}
  {{- if include "machine-reconciler.createSecret" . }}
  {{- /* The token is read at start: a new one rolls the pod. */}}
  {{- $_ := set $annotations "checksum/secret" (include (print .Template.BasePath "/secret.yaml") . | sha256sum) }}
  {{- end }}
  {{- with .Values.podAnnotations }}
  {{- $annotations = merge $annotations (deepCopy .) }}
  {{- end }}
  {{- with $annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "machine-reconciler.serviceAccountName" . }}
  # The controller never calls the Kubernetes API.
  automountServiceAccountToken: false
  # Service links would inject MACHINE_RECONCILER_SERVICE_HOST and friends into the daemon's
  # settings namespace.
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ include "machine-reconciler.terminationGracePeriod" . }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: machine-reconciler
      image: {{ include "machine-reconciler.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "machine-reconciler.args" . | nindent 8 }}
      env:
        {{- include "machine-reconciler.env" . | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .Values.health.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: desired-state
          mountPath: {{ include "machine-reconciler.desiredDir" . }}
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if eq .Values.apiToken.mountAs "file" }}
        - name: api-token
          mountPath: {{ include "machine-reconciler.tokenDir" . }}
          readOnly: true
        {{- end }}
  volumes:
    - name: desired-state
      configMap:
        name: {{ include "machine-reconciler.configMapName" . }}
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    {{- if eq .Values.apiToken.mountAs "file" }}
    - name: api-token
      secret:
        secretName: {{ include "machine-reconciler.tokenSecretName" . }}
        defaultMode: 0440
        items:
          - key: {{ .Values.apiToken.key | quote }}
            path: {{ .Values.apiToken.key | quote }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
