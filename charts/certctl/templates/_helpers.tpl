{{/*
Names, labels, images.
*/}}
{{- define "certctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "certctl.fullname" -}}
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

{{/* A name derived from the full name: (list $ "suffix"). */}}
{{- define "certctl.child" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "certctl.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" -}}
{{- end -}}

{{- define "certctl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "certctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (list $ "server"). */}}
{{- define "certctl.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "certctl.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* All labels of one component: (list $ "server"). */}}
{{- define "certctl.componentLabels" -}}
{{ include "certctl.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "certctl.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "certctl.postgresImage" -}}
{{- printf "%s:%s" .Values.postgresql.image.repository .Values.postgresql.image.tag -}}
{{- end -}}

{{- define "certctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "certctl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Services and their DNS names.
*/}}
{{- define "certctl.serverServiceName" -}}
{{- include "certctl.fullname" . -}}
{{- end -}}

{{- define "certctl.postgresServiceName" -}}
{{- include "certctl.child" (list . "postgresql") -}}
{{- end -}}

{{/* DNS names of the server Service, shortest first. */}}
{{- define "certctl.serverDnsNames" -}}
{{- $svc := include "certctl.serverServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) -}}
{{- concat $names .Values.server.tls.extraDnsNames | uniq | toJson -}}
{{- end -}}

{{- define "certctl.serverUrl" -}}
{{- if .Values.agent.serverUrl -}}
{{- .Values.agent.serverUrl -}}
{{- else -}}
{{- printf "https://%s.%s.svc:%d" (include "certctl.serverServiceName" .) .Release.Namespace (int .Values.server.port) -}}
{{- end -}}
{{- end -}}

{{/*
TLS: which Secret holds the server certificate.
*/}}
{{- define "certctl.tlsMode" -}}
{{- if .Values.server.tls.existingSecret -}}existing
{{- else if .Values.server.tls.certManager.enabled -}}cert-manager
{{- else -}}generated
{{- end -}}
{{- end -}}

{{- define "certctl.tlsSecretName" -}}
{{- if .Values.server.tls.existingSecret -}}
{{- .Values.server.tls.existingSecret -}}
{{- else -}}
{{- include "certctl.child" (list . "tls") -}}
{{- end -}}
{{- end -}}

{{- define "certctl.serverSecretName" -}}
{{- if .Values.server.existingSecret -}}
{{- .Values.server.existingSecret -}}
{{- else -}}
{{- include "certctl.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "certctl.dbSecretName" -}}
{{- include "certctl.child" (list . "db") -}}
{{- end -}}

{{/*
Render-time checks. Every template includes this, so an invalid combination fails any render
with a message naming the value to set.
*/}}
{{- define "certctl.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.agent.kind (list "DaemonSet" "Deployment")) -}}
{{- fail (printf "agent.kind must be DaemonSet or Deployment (got %q)" (toString $v.agent.kind)) -}}
{{- end -}}
{{- if and (not $v.postgresql.enabled) (not $v.externalDatabase.url) (not $v.externalDatabase.existingSecret) -}}
{{- fail "no database: postgresql.enabled is false, so set externalDatabase.url (postgres://USER:PASSWORD@HOST:5432/DB) or externalDatabase.existingSecret" -}}
{{- end -}}
{{- if and $v.postgresql.enabled (or $v.externalDatabase.url $v.externalDatabase.existingSecret) -}}
{{- fail "externalDatabase.url/existingSecret is set but postgresql.enabled is true: set postgresql.enabled=false to use the external database" -}}
{{- end -}}
{{- if and $v.externalDatabase.url (not (regexMatch "^postgres(ql)?://" $v.externalDatabase.url)) -}}
{{- fail "externalDatabase.url must start with postgres:// or postgresql://" -}}
{{- end -}}
{{- if $v.backup.enabled -}}
{{- if not $v.postgresql.enabled -}}
{{- fail "backup.enabled needs the bundled PostgreSQL (postgresql.enabled=true); with an external database (externalDatabase.*) use its own backup tooling and set backup.enabled=false" -}}
{{- end -}}
{{- if and (eq $v.backup.sink "s3") (not $v.backup.s3.bucket) -}}
{{- fail "backup.sink is s3 but backup.s3.bucket is empty: set backup.s3.bucket" -}}
{{- end -}}
{{- end -}}
{{- if and $v.server.tls.existingSecret $v.server.tls.certManager.enabled -}}
{{- fail "server.tls.existingSecret and server.tls.certManager.enabled are exclusive: choose one" -}}
{{- end -}}
{{- if and $v.server.tls.certManager.enabled (not $v.server.tls.certManager.issuerRef.name) -}}
{{- fail "server.tls.certManager.enabled needs server.tls.certManager.issuerRef.name" -}}
{{- end -}}
{{- if $v.server.issuer.acme.enabled -}}
{{- if $v.server.issuer.acme.dnsSolver -}}
{{- $found := false -}}
{{- range $v.plugins.instances.dnsSolvers -}}
{{- if eq .name $v.server.issuer.acme.dnsSolver -}}{{- $found = true -}}{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "server.issuer.acme.dnsSolver %q names no entry of plugins.instances.dnsSolvers: add {name: %s, plugin: ..., config: ...} there" $v.server.issuer.acme.dnsSolver $v.server.issuer.acme.dnsSolver) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $kind, $list := $v.plugins.instances -}}
{{- $seen := dict -}}
{{- range $list -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "plugins.instances.%s: the name %q is used twice" $kind .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}
{{- $serverOwned := dict "CERTCTL_SERVER_HOST" "server.listenAddress" "CERTCTL_SERVER_PORT" "server.port" "CERTCTL_SERVER_TLS_CERT_PATH" "server.tls.*" "CERTCTL_SERVER_TLS_KEY_PATH" "server.tls.*" "CERTCTL_DATA_DIR" "(an emptyDir; not configurable)" "CERTCTL_DATABASE_URL" "externalDatabase.url or postgresql.*" "CERTCTL_DATABASE_MAX_CONNS" "server.databaseMaxConns" "CERTCTL_LOG_LEVEL" "server.logLevel" "CERTCTL_LOG_FORMAT" "server.logFormat" "CERTCTL_API_KEYS_NAMED" "server.auth.apiKey/metricsKey or server.existingSecret" "CERTCTL_AGENT_BOOTSTRAP_TOKEN" "server.auth.agentBootstrapToken" "CERTCTL_CONFIG_ENCRYPTION_KEY" "server.encryptionKey" "CERTCTL_MIGRATIONS_VIA_HOOK" "migrations.viaHook" "CERTCTL_PLUGIN_DIRS" "plugins.configMaps" "CERTCTL_PLUGIN_GRANTS" "plugins.grants" "CERTCTL_INSTANCES_FILE" "plugins.instances" "CERTCTL_ACME_HTTP01_ADDRESS" "server.acmeHttp01Port" -}}
{{- range $v.server.env -}}
{{- if hasKey $serverOwned .name -}}
{{- fail (printf "server.env sets %s, which the chart sets itself: use %s instead" .name (get $serverOwned .name)) -}}
{{- end -}}
{{- end -}}
{{- $agentOwned := dict "CERTCTL_SERVER_URL" "agent.serverUrl" "CERTCTL_AGENT_BOOTSTRAP_TOKEN" "server.auth.agentBootstrapToken" "CERTCTL_AGENT_NAME" "agent.kind (DaemonSet: the node name; Deployment: the pod name)" "CERTCTL_KEY_DIR" "agent.hostKeyDir or agent.persistence" "CERTCTL_DISCOVERY_DIRS" "agent.discoveryDirs" "CERTCTL_SERVER_CA_BUNDLE_PATH" "agent.serverCA" "CERTCTL_LOG_LEVEL" "agent.logLevel" "CERTCTL_LOG_FORMAT" "agent.logFormat" -}}
{{- range $v.agent.env -}}
{{- if hasKey $agentOwned .name -}}
{{- fail (printf "agent.env sets %s, which the chart sets itself: use %s instead" .name (get $agentOwned .name)) -}}
{{- end -}}
{{- end -}}
{{- range concat $v.server.env $v.agent.env -}}
{{- if eq .name "CERTCTL_AGENT_ID" -}}
{{- fail "server.env/agent.env set CERTCTL_AGENT_ID: never set it. Each agent registers with the bootstrap token and gets its own id; one shared id makes every agent but the first crash-loop" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Secrets: generated once per render (memoised on the root context) and kept across upgrades
by reading the live Secrets back with lookup. `helm template` (no cluster) always generates.
*/}}
{{- define "certctl.secrets.init" -}}
{{- if not (hasKey . "certctlSecrets") -}}
{{- $v := .Values -}}
{{- $old := dict -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "certctl.fullname" .) -}}
{{- if and $s $s.data -}}{{- $old = $s.data -}}{{- end -}}
{{- $oldDb := dict -}}
{{- $d := lookup "v1" "Secret" .Release.Namespace (include "certctl.dbSecretName" .) -}}
{{- if and $d $d.data -}}{{- $oldDb = $d.data -}}{{- end -}}
{{- $admin := $v.server.auth.apiKey | default (get $old "admin-api-key" | b64dec) | default (randAlphaNum 40) -}}
{{- $metrics := $v.server.auth.metricsKey | default (get $old "metrics-api-key" | b64dec) | default (randAlphaNum 40) -}}
{{- $token := $v.server.auth.agentBootstrapToken | default (get $old "agent-bootstrap-token" | b64dec) | default (randAlphaNum 48) -}}
{{- $enc := $v.server.encryptionKey | default (get $old "encryption-key" | b64dec) | default (randBytes 32) -}}
{{- $pgPassword := $v.postgresql.auth.password | default (get $oldDb "postgres-password" | b64dec) | default (randAlphaNum 32) -}}
{{- $dbUrl := "" -}}
{{- if $v.postgresql.enabled -}}
{{- if $v.postgresql.auth.existingSecret -}}
{{- $dbUrl = printf "postgres://%s:$(PGPASSWORD)@%s:5432/%s" $v.postgresql.auth.username (include "certctl.postgresServiceName" .) $v.postgresql.auth.database -}}
{{- else -}}
{{- $dbUrl = printf "postgres://%s:%s@%s:5432/%s" $v.postgresql.auth.username (urlquery $pgPassword) (include "certctl.postgresServiceName" .) $v.postgresql.auth.database -}}
{{- end -}}
{{- else -}}
{{- $dbUrl = $v.externalDatabase.url -}}
{{- end -}}
{{- $_ := set . "certctlSecrets" (dict
  "admin" $admin
  "metrics" $metrics
  "token" $token
  "encryption" $enc
  "apiKeysNamed" (printf "admin:%s:admin,metrics:%s:metrics" $admin $metrics)
  "pgPassword" $pgPassword
  "dbUrl" $dbUrl
) -}}
{{- end -}}
{{- end -}}

{{/*
The generated CA and server certificate (TLS mode "generated"), memoised like the secrets.
The CA is reused from <fullname>-ca; the server certificate from <fullname>-tls unless it
expires within renewDaysBefore or its names changed, then it is re-issued from the same CA.
*/}}
{{- define "certctl.tls.init" -}}
{{- if not (hasKey . "certctlTls") -}}
{{- $g := .Values.server.tls.generated -}}
{{- $names := include "certctl.serverDnsNames" . | fromJsonArray -}}
{{- $namesKey := join "," $names -}}
{{- $caSecret := lookup "v1" "Secret" .Release.Namespace (include "certctl.child" (list . "ca")) -}}
{{- $tlsSecret := lookup "v1" "Secret" .Release.Namespace (include "certctl.child" (list . "tls")) -}}
{{- $ca := dict -}}
{{- if and $caSecret $caSecret.data (hasKey $caSecret.data "ca.crt") (hasKey $caSecret.data "ca.key") -}}
{{- $ca = buildCustomCert (index $caSecret.data "ca.crt") (index $caSecret.data "ca.key") -}}
{{- else -}}
{{- $ca = genCA (printf "%s CA" (include "certctl.fullname" .)) (int $g.caValidityDays) -}}
{{- end -}}
{{- $crt := "" -}}
{{- $key := "" -}}
{{- $notAfter := 0 -}}
{{- $now := now | unixEpoch | int64 -}}
{{- if and $tlsSecret $tlsSecret.data $tlsSecret.metadata.annotations -}}
{{- $ann := $tlsSecret.metadata.annotations -}}
{{- $oldNotAfter := get $ann "certctl.io/not-after-unix" | default "0" | int64 -}}
{{- $renewAt := sub $oldNotAfter (mul (int $g.renewDaysBefore) 86400) -}}
{{- if and (eq (get $ann "certctl.io/dns-names") $namesKey) (lt $now $renewAt) (eq (index $tlsSecret.data "ca.crt") ($ca.Cert | b64enc)) -}}
{{- $crt = index $tlsSecret.data "tls.crt" | b64dec -}}
{{- $key = index $tlsSecret.data "tls.key" | b64dec -}}
{{- $notAfter = $oldNotAfter -}}
{{- end -}}
{{- end -}}
{{- if not $crt -}}
{{- /* localhost and 127.0.0.1 too, for kubectl port-forward. */ -}}
{{- $cert := genSignedCert (first $names) (list "127.0.0.1") (append $names "localhost") (int $g.certValidityDays) $ca -}}
{{- $crt = $cert.Cert -}}
{{- $key = $cert.Key -}}
{{- $notAfter = add $now (mul (int $g.certValidityDays) 86400) -}}
{{- end -}}
{{- $_ := set . "certctlTls" (dict "caCert" $ca.Cert "caKey" $ca.Key "crt" $crt "key" $key "notAfter" $notAfter "names" $namesKey) -}}
{{- end -}}
{{- end -}}

{{/* The checksum of everything secret the server reads at start-up. */}}
{{- define "certctl.secretChecksum" -}}
{{- include "certctl.secrets.init" . -}}
{{- $parts := list (toJson .certctlSecrets) .Values.server.existingSecret .Values.externalDatabase.existingSecret .Values.postgresql.auth.existingSecret .Values.server.tls.existingSecret -}}
{{- if eq (include "certctl.tlsMode" .) "generated" -}}
{{- include "certctl.tls.init" . -}}
{{- $parts = append $parts (toJson .certctlTls) -}}
{{- end -}}
{{- join "\n" $parts | sha256sum -}}
{{- end -}}

{{/*
The database URL as an env entry (plus PGPASSWORD it is composed from, when the bundled
PostgreSQL's password lives in an existing Secret). (list $ "secret-name-to-use")
*/}}
{{- define "certctl.databaseEnv" -}}
{{- $root := index . 0 -}}
{{- $secret := index . 1 -}}
{{- $v := $root.Values -}}
{{- if and $v.postgresql.enabled $v.postgresql.auth.existingSecret }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.postgresql.auth.existingSecret }}
      key: {{ $v.postgresql.auth.passwordKey }}
- name: CERTCTL_DATABASE_URL
  value: {{ $root.certctlSecrets.dbUrl | quote }}
{{- else if and (not $v.postgresql.enabled) $v.externalDatabase.existingSecret }}
- name: CERTCTL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalDatabase.existingSecret }}
      key: {{ $v.externalDatabase.existingSecretKey }}
{{- else }}
- name: CERTCTL_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: database-url
{{- end }}
{{- end -}}

{{/* Does the chart render a database Secret of its own? */}}
{{- define "certctl.ownsDbSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{- if not .Values.postgresql.auth.existingSecret -}}true{{- end -}}
{{- else if .Values.externalDatabase.url -}}true
{{- end -}}
{{- end -}}

{{/*
Plugin instances: the JSON file for CERTCTL_INSTANCES_FILE, and the Secrets it references.
*/}}
{{- define "certctl.secretMountPath" -}}
{{- printf "/etc/certctl/secrets/%s" . -}}
{{- end -}}

{{/* One instance with its secretRefs turned into file: references. */}}
{{- define "certctl.instance" -}}
{{- $config := deepCopy (default dict .config) -}}
{{- range $key, $ref := (default dict .secretRefs) -}}
{{- $_ := set $config $key (printf "file:%s/%s" (include "certctl.secretMountPath" $ref.secretName) $ref.key) -}}
{{- end -}}
{{- dict "name" .name "plugin" .plugin "config" $config | toJson -}}
{{- end -}}

{{- define "certctl.instancesJson" -}}
{{- $v := .Values -}}
{{- $issuers := list -}}
{{- range $v.plugins.instances.issuers -}}
{{- $issuers = append $issuers (include "certctl.instance" . | fromJson) -}}
{{- end -}}
{{- $acme := $v.server.issuer.acme -}}
{{- if $acme.enabled -}}
{{- $config := dict "directory_url" $acme.directoryUrl -}}
{{- if $acme.email -}}{{- $_ := set $config "contact" (list (printf "mailto:%s" $acme.email)) -}}{{- end -}}
{{- if $acme.dnsSolver -}}
{{- $_ := set $config "challenge" "dns-01" -}}
{{- $_ := set $config "dns_solver" $acme.dnsSolver -}}
{{- else -}}
{{- $_ := set $config "challenge" "http-01" -}}
{{- end -}}
{{- if $acme.cnamePolicy -}}{{- $_ := set $config "cname_policy" $acme.cnamePolicy -}}{{- end -}}
{{- if $acme.profile -}}{{- $_ := set $config "profile" $acme.profile -}}{{- end -}}
{{- if $acme.preferredChain -}}{{- $_ := set $config "preferred_chain" $acme.preferredChain -}}{{- end -}}
{{- if $acme.eabKid -}}{{- $_ := set $config "eab_kid" $acme.eabKid -}}{{- end -}}
{{- $refs := dict -}}
{{- if $acme.eabHmacKeySecretRef -}}{{- $_ := set $refs "eab_hmac_key" $acme.eabHmacKeySecretRef -}}{{- end -}}
{{- $config = merge $config (deepCopy $acme.extraConfig) -}}
{{- $issuers = append $issuers (include "certctl.instance" (dict "name" $acme.name "plugin" "acme" "config" $config "secretRefs" $refs) | fromJson) -}}
{{- end -}}
{{- $solvers := list -}}
{{- range $v.plugins.instances.dnsSolvers -}}
{{- $solvers = append $solvers (include "certctl.instance" . | fromJson) -}}
{{- end -}}
{{- $notifiers := list -}}
{{- range $v.plugins.instances.notifiers -}}
{{- $notifiers = append $notifiers (include "certctl.instance" . | fromJson) -}}
{{- end -}}
{{- dict "issuers" $issuers "dns_solvers" $solvers "notifiers" $notifiers | toPrettyJson -}}
{{- end -}}

{{- define "certctl.hasInstances" -}}
{{- $i := .Values.plugins.instances -}}
{{- if or $i.issuers $i.dnsSolvers $i.notifiers .Values.server.issuer.acme.enabled -}}true{{- end -}}
{{- end -}}

{{/* Names of the Secrets the instances reference, sorted and unique, as JSON. */}}
{{- define "certctl.instanceSecrets" -}}
{{- $names := list -}}
{{- $i := .Values.plugins.instances -}}
{{- range concat $i.issuers $i.dnsSolvers $i.notifiers -}}
{{- range $k, $ref := (default dict .secretRefs) -}}
{{- $names = append $names $ref.secretName -}}
{{- end -}}
{{- end -}}
{{- $acme := .Values.server.issuer.acme -}}
{{- if and $acme.enabled $acme.eabHmacKeySecretRef -}}
{{- $names = append $names $acme.eabHmacKeySecretRef.secretName -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* The grants file: operator grants, plus the ACME directory host for the acme plugin. */}}
{{- define "certctl.grants" -}}
{{- $grants := deepCopy .Values.plugins.grants -}}
{{- $acme := .Values.server.issuer.acme -}}
{{- if and $acme.enabled (not (hasKey $grants "acme")) -}}
{{- $u := urlParse $acme.directoryUrl -}}
{{- $_ := set $grants "acme" (dict "outbound_hosts" (list (printf "%s://%s" $u.scheme $u.host))) -}}
{{- end -}}
# Grants per plugin (CERTCTL_PLUGIN_GRANTS), rendered from plugins.grants.
{{- range $name := keys $grants | sortAlpha }}
{{- $g := index $grants $name }}
[{{ if regexMatch "^[A-Za-z0-9_-]+$" $name }}{{ $name }}{{ else }}{{ $name | quote }}{{ end }}]
outbound_hosts = [{{ range $i, $h := (default list $g.outbound_hosts) }}{{ if $i }}, {{ end }}{{ $h | quote }}{{ end }}]
{{- if hasKey $g "allow_private_networks" }}
allow_private_networks = {{ $g.allow_private_networks }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "certctl.hasGrants" -}}
{{- if or .Values.plugins.grants .Values.server.issuer.acme.enabled -}}true{{- end -}}
{{- end -}}

{{- define "certctl.pluginDirs" -}}
{{- $dirs := list "/usr/lib/certctl/plugins" -}}
{{- range .Values.plugins.configMaps -}}
{{- $dirs = append $dirs (printf "/etc/certctl/plugins/%s" .name) -}}
{{- end -}}
{{- join "," $dirs -}}
{{- end -}}

{{/* The server container's security context, shared by certctl containers. */}}
{{- define "certctl.containerSecurityContext" -}}
{{- toYaml .Values.server.securityContext -}}
{{- end -}}

{{/* The agent's discovery directories as seen in its container (under /host). */}}
{{- define "certctl.agentDiscoveryDirs" -}}
{{- $dirs := list -}}
{{- range .Values.agent.discoveryDirs -}}
{{- $dirs = append $dirs (printf "/host%s" .) -}}
{{- end -}}
{{- join "," $dirs -}}
{{- end -}}

{{/* The pg_dump container of the backup Job (after its name): (list $ image). */}}
{{- define "certctl.backupDumpContainer" -}}
{{- $root := index . 0 -}}
{{- $v := $root.Values -}}
{{- $pg := $v.postgresql -}}
image: {{ index . 1 }}
imagePullPolicy: {{ $pg.image.pullPolicy }}
command: ["sh", "/scripts/backup.sh", "dump"]
env:
  - name: PGHOST
    value: {{ include "certctl.postgresServiceName" $root }}
  - name: PGPORT
    value: "5432"
  - name: PGUSER
    value: {{ $pg.auth.username | quote }}
  - name: PGDATABASE
    value: {{ $pg.auth.database | quote }}
  - name: PGPASSWORD
    valueFrom:
      secretKeyRef:
        {{- if $pg.auth.existingSecret }}
        name: {{ $pg.auth.existingSecret }}
        key: {{ $pg.auth.passwordKey }}
        {{- else }}
        name: {{ include "certctl.dbSecretName" $root }}
        key: postgres-password
        {{- end }}
  - name: BACKUP_DIR
    value: /backup
  - name: BACKUP_RETENTION
    value: {{ ternary "0" ($v.backup.retention | toString) (eq $v.backup.sink "s3") | quote }}
resources:
  {{- toYaml $v.backup.resources | nindent 2 }}
securityContext:
  {{- include "certctl.containerSecurityContext" $root | nindent 2 }}
volumeMounts:
  - name: backup
    mountPath: /backup
  - name: scripts
    mountPath: /scripts
    readOnly: true
  - name: tmp
    mountPath: /tmp
{{- end -}}

{{/* NetworkPolicy egress rule to the database (bundled pods, or the external address). */}}
{{- define "certctl.databaseEgress" -}}
{{- if .Values.postgresql.enabled -}}
- to:
    - podSelector:
        matchLabels:
          {{- include "certctl.selectorLabels" (list . "postgresql") | nindent 10 }}
  ports:
    - port: 5432
      protocol: TCP
{{- else -}}
{{- $db := .Values.networkPolicy.externalDatabase -}}
- ports:
    - port: {{ $db.port }}
      protocol: TCP
  {{- with $db.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
  {{- end }}
{{- end -}}
{{- end -}}
