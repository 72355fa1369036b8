package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/immeter/immeter/schemas"
)

// security holds the transport security settings: Kafka SASL and TLS,
// ClickHouse TLS, and the password files.
type security struct {
	kafka              schemas.KafkaSecurity
	kafkaPasswordFile  string
	clickhouseTLS      bool
	clickhousePassFile string
}

// register adds the security settings.
func (s *security) register(r *settings) {
	r.str(&s.kafka.SASLMechanism, "KAFKA_SASL_MECHANISM", false, "SCRAM-SHA-512 or PLAIN; empty: no SASL")
	r.str(&s.kafka.Username, "KAFKA_SASL_USERNAME", false, "SASL user")
	r.str(&s.kafkaPasswordFile, "KAFKA_SASL_PASSWORD_FILE", false, "file holding the SASL password")
	r.boolean(&s.kafka.TLS, "KAFKA_TLS", "TLS to the brokers")
	r.str(&s.kafka.CAFile, "KAFKA_TLS_CA_FILE", false, "PEM CA bundle for the brokers; default the system's")
	r.str(&s.kafka.CertFile, "KAFKA_TLS_CERT_FILE", false, "PEM client certificate")
	r.str(&s.kafka.KeyFile, "KAFKA_TLS_KEY_FILE", false, "PEM client key")
	r.str(&s.kafka.ServerName, "KAFKA_TLS_SERVER_NAME", false, "name in the brokers' certificates; default their host")
	r.boolean(&s.clickhouseTLS, "CLICKHOUSE_TLS", "TLS to ClickHouse's secure native port")
	r.str(&s.clickhousePassFile, "CLICKHOUSE_PASSWORD_FILE", false, "file holding the ClickHouse password")
}

// registerClickHouseTLS adds the ClickHouse TLS settings that fill ch.
func registerClickHouseTLS(r *settings, ch *schemas.ClickHouseConfig) {
	r.str(&ch.TLSCAFile, "CLICKHOUSE_TLS_CA_FILE", false, "PEM CA bundle for ClickHouse; default the system's")
	r.str(&ch.TLSServerName, "CLICKHOUSE_TLS_SERVER_NAME", false, "name in ClickHouse's certificate; default its host")
}

// load reads the password files and checks the settings; ch, when not nil,
// gets the ClickHouse TLS switch and password.
func (s *security) load(ch *schemas.ClickHouseConfig) error {
	var err error
	if s.kafkaPasswordFile != "" {
		if s.kafka.Password, err = readSecretFile(s.kafkaPasswordFile); err != nil {
			return fmt.Errorf("KAFKA_SASL_PASSWORD_FILE: %w", err)
		}
	} else if s.kafka.SASLMechanism != "" {
		return errors.New("KAFKA_SASL_PASSWORD_FILE: required with KAFKA_SASL_MECHANISM")
	}
	if err := s.kafka.Validate(); err != nil {
		return err
	}
	if ch == nil {
		return nil
	}
	ch.TLS = s.clickhouseTLS
	if s.clickhousePassFile != "" {
		if ch.Password != "" {
			return errors.New("CLICKHOUSE_PASSWORD_FILE: set together with CLICKHOUSE_PASSWORD; use one")
		}
		if ch.Password, err = readSecretFile(s.clickhousePassFile); err != nil {
			return fmt.Errorf("CLICKHOUSE_PASSWORD_FILE: %w", err)
		}
	}
	return nil
}

// readSecretFile returns a file's content without the line end; it must
// not be empty.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return s, nil
}
