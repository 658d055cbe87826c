{{/* Names and labels. */}}
{{- define "streambind.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streambind.fullname" -}}
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

{{- define "streambind.selectorLabels" -}}
app.kubernetes.io/name: {{ include "streambind.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streambind.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "streambind.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "streambind.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "streambind.weightsClaim" -}}
{{- if .Values.weights.persistence.existingClaim -}}
{{- .Values.weights.persistence.existingClaim -}}
{{- else -}}
{{- printf "%s-weights" (include "streambind.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "streambind.labelsConfigMap" -}}
{{- default (printf "%s-labels" (include "streambind.fullname" .)) .Values.labels.existingConfigMap -}}
{{- end -}}

{{/*
The Ray Serve config: files/serve_config.yaml (a copy of deploy/serve_config.yaml) with
the overrides of .Values.serve applied. Rendered as YAML.
*/}}
{{- define "streambind.serveConfig" -}}
{{- $cfg := .Files.Get "files/serve_config.yaml" | fromYaml -}}
{{- if not $cfg.applications -}}
{{- fail "files/serve_config.yaml is missing or has no applications" -}}
{{- end -}}
{{- $s := .Values.serve -}}
{{- range $app := $cfg.applications -}}
{{- range $d := $app.deployments -}}
{{- if eq $d.name "Embedder" -}}
{{- $e := $s.embedder -}}
{{- if not (kindIs "invalid" $e.gpus) }}{{ $_ := set $d.ray_actor_options "num_gpus" $e.gpus }}{{ end -}}
{{- if not (kindIs "invalid" $e.cpus) }}{{ $_ := set $d.ray_actor_options "num_cpus" $e.cpus }}{{ end -}}
{{- if not (kindIs "invalid" $e.minReplicas) }}{{ $_ := set $d.autoscaling_config "min_replicas" $e.minReplicas }}{{ end -}}
{{- if not (kindIs "invalid" $e.maxReplicas) }}{{ $_ := set $d.autoscaling_config "max_replicas" $e.maxReplicas }}{{ end -}}
{{- if not (kindIs "invalid" $e.targetOngoingRequests) }}{{ $_ := set $d.autoscaling_config "target_ongoing_requests" $e.targetOngoingRequests }}{{ end -}}
{{- if not (kindIs "invalid" $e.maxOngoingRequests) }}{{ $_ := set $d "max_ongoing_requests" $e.maxOngoingRequests }}{{ end -}}
{{- if $e.batching -}}
{{- $_ := set $d.user_config "batching" (mergeOverwrite (deepCopy $d.user_config.batching) (deepCopy $e.batching)) -}}
{{- end -}}
{{- end -}}
{{- if eq $d.name "Ingest" -}}
{{- $i := $s.ingest -}}
{{- if not (kindIs "invalid" $i.replicas) }}{{ $_ := set $d "num_replicas" $i.replicas }}{{ end -}}
{{- if not (kindIs "invalid" $i.cpus) }}{{ $_ := set $d.ray_actor_options "num_cpus" $i.cpus }}{{ end -}}
{{- end -}}
{{- with (get $s.deploymentOverrides $d.name) -}}
{{- $_ := mergeOverwrite $d (deepCopy .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
The deployments of the merged Serve config, checked: {"Embedder": {...}, "Ingest": {...}}.
Rendered as JSON (use with fromJson).
*/}}
{{- define "streambind.deployments" -}}
{{- $serve := include "streambind.serveConfig" . | fromYaml -}}
{{- $out := dict -}}
{{- range $app := $serve.applications -}}
{{- range $d := $app.deployments -}}
{{- $_ := set $out $d.name $d -}}
{{- end -}}
{{- end -}}
{{- $emb := required "the Serve config has no Embedder deployment" (get $out "Embedder") -}}
{{- $ing := required "the Serve config has no Ingest deployment" (get $out "Ingest") -}}
{{- $gpus := $emb.ray_actor_options.num_gpus -}}
{{- if or (lt (float64 $gpus) 1.0) (ne (float64 $gpus) (float64 (int64 $gpus))) -}}
{{- fail (printf "serve.embedder.gpus must be a whole number >= 1 (one Embedder per GPU pod), got %v" $gpus) -}}
{{- end -}}
{{- $as := $emb.autoscaling_config -}}
{{- if gt (int64 $as.min_replicas) (int64 $as.max_replicas) -}}
{{- fail (printf "Embedder min_replicas (%v) > max_replicas (%v)" $as.min_replicas $as.max_replicas) -}}
{{- end -}}
{{- if lt (float64 $emb.max_ongoing_requests) (float64 $as.target_ongoing_requests) -}}
{{- fail "Embedder max_ongoing_requests < target_ongoing_requests: Serve would never scale up" -}}
{{- end -}}
{{- if lt (int64 $ing.num_replicas) 1 -}}
{{- fail "serve.ingest.replicas must be >= 1" -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The streambind config file (config.yaml). Credentials are refused here: they come from
the Secret through STREAMBIND_KAFKA__SASL_PLAIN_* environment variables.
*/}}
{{- define "streambind.configFile" -}}
{{- $k := .Values.kafka -}}
{{- $kafka := dict "bootstrap_servers" $k.bootstrapServers "group_id" $k.groupId "security_protocol" $k.securityProtocol -}}
{{- if hasPrefix "SASL_" $k.securityProtocol -}}
{{- $_ := set $kafka "sasl_mechanism" $k.saslMechanism -}}
{{- end -}}
{{- if and (has $k.securityProtocol (list "SSL" "SASL_SSL")) $k.tls.existingSecret -}}
{{- $_ := set $kafka "ssl_cafile" "/etc/streambind/tls/ca.crt" -}}
{{- if $k.tls.clientAuth -}}
{{- $_ := set $kafka "ssl_certfile" "/etc/streambind/tls/tls.crt" -}}
{{- $_ := set $kafka "ssl_keyfile" "/etc/streambind/tls/tls.key" -}}
{{- end -}}
{{- end -}}
{{- $model := dict "source" .Values.model.source "cache_dir" "/models" "dtype" .Values.model.dtype "device" "cuda" -}}
{{- $cfg := dict "kafka" $kafka "model" $model "labels" (dict "file" "/etc/streambind/labels/labels.yaml") "metrics" (dict "port" .Values.metrics.port) -}}
{{- $cfg = mergeOverwrite $cfg (deepCopy .Values.extraConfig) -}}
{{- if regexMatch "\"[A-Za-z0-9_]*(?i:password|secret|token)[A-Za-z0-9_]*\":" (toJson $cfg) -}}
{{- fail "a password, secret or token in extraConfig: put credentials in the Kafka Secret (kafka.sasl.existingSecret)" -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Environment of every Ray container. */}}
{{- define "streambind.env" -}}
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- $k := .Values.kafka }}
{{- if hasPrefix "SASL_" $k.securityProtocol }}
{{- $secret := required "kafka.sasl.existingSecret is required with a SASL_* securityProtocol" $k.sasl.existingSecret }}
- name: STREAMBIND_KAFKA__SASL_PLAIN_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $k.sasl.usernameKey }}
- name: STREAMBIND_KAFKA__SASL_PLAIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $k.sasl.passwordKey }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volume mounts of every Ray container. */}}
{{- define "streambind.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: dshm
  mountPath: /dev/shm
- name: config
  mountPath: /etc/streambind/config.yaml
  subPath: config.yaml
  readOnly: true
- name: labels
  mountPath: /etc/streambind/labels
  readOnly: true
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/streambind/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes of every Ray pod. */}}
{{- define "streambind.volumes" -}}
- name: tmp
  emptyDir: {}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.shmSize }}
- name: config
  configMap:
    name: {{ include "streambind.fullname" . }}-config
- name: labels
  configMap:
    name: {{ include "streambind.labelsConfigMap" . }}
    items:
      - key: labels.yaml
        path: labels.yaml
{{- $tls := .Values.kafka.tls }}
{{- if and (has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL")) $tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $tls.existingSecret }}
    defaultMode: 288 # 0440
    items:
      - key: {{ $tls.caKey }}
        path: ca.crt
      {{- if $tls.clientAuth }}
      - key: {{ $tls.certKey }}
        path: tls.crt
      - key: {{ $tls.keyKey }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by every Ray pod: security context, pull secrets. */}}
{{- define "streambind.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod metadata for a Ray pod; call with (dict "root" $ "component" "head"). A change of the
config file changes the pod template, so KubeRay rolls out a new cluster (it is mounted
with subPath and would not update in place). Label sets are mounted as a directory and
update in place; new versions normally go through the streambind.labels topic.
*/}}
{{- define "streambind.podMetadata" -}}
labels:
  {{- include "streambind.selectorLabels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include "streambind.configFile" .root | sha256sum }}
  {{- with .root.Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Scheduling of a group; call with its values (nodeSelector, tolerations, affinity). */}}
{{- define "streambind.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
