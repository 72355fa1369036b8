// Package ingest is how IM nodes publish usage events to Kafka: a producer library, an authenticated HTTP gateway and a traffic simulator.
package ingest
