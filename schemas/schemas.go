package schemas

import _ "embed"

// EventSchema is the JSON Schema of event contract v1.
//
//go:embed event.schema.json
var EventSchema []byte

// BillingRecordSchema is the JSON Schema of billing record contract v1.
//
//go:embed billing-record.schema.json
var BillingRecordSchema []byte

// Default Kafka topic names.
const (
	EventsTopic  = "im.usage.events"
	DLQTopic     = "im.usage.dlq"
	BillingTopic = "im.billing.monthly"
)

// AlertSchema is the JSON Schema of alert contract v1.
//
//go:embed alert.schema.json
var AlertSchema []byte

// AlertsTopic is the default topic of usage alerts.
const AlertsTopic = "im.usage.alerts"
