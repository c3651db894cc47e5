{{- define "health-monitoring-agent.imageUri" -}}
{{- $region := .Values.region | default (and .Values.global .Values.global.region) | default "us-east-1" -}}
{{- $accounts := dict "us-east-1" "767398015722" "us-west-2" "905418368575" "eu-west-1" "533267293120" -}}
{{- $account := index $accounts $region | default "767398015722" -}}
{{- printf "%s.dkr.ecr.%s.amazonaws.com/hyperpod-health-monitoring-agent:%s" $account $region (.Values.imageTag | default "1.0.935.0_1.0.282.0") -}}
{{- end }}
