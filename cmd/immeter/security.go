package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/immeter/immeter/schemas"
)

// security holds the transport security settings: Kafka SASL and TLS,
// ClickHouse TLS, and the password files.
type security struct {
	kafka              schemas.KafkaSecurity
	kafkaTLS           string
	kafkaPasswordFile  string
	clickhouseTLS      string
	clickhousePassFile string
}

// register adds the security flags to fs, with defaults from the environment.
func (s *security) register(fs *flag.FlagSet) {
	fs.StringVar(&s.kafka.SASLMechanism, "kafka-sasl-mechanism", env("KAFKA_SASL_MECHANISM", ""), "SCRAM-SHA-512 or PLAIN; empty: no SASL (KAFKA_SASL_MECHANISM)")
	fs.StringVar(&s.kafka.Username, "kafka-sasl-username", env("KAFKA_SASL_USERNAME", ""), "SASL user (KAFKA_SASL_USERNAME)")
	fs.StringVar(&s.kafkaPasswordFile, "kafka-sasl-password-file", env("KAFKA_SASL_PASSWORD_FILE", ""), "file holding the SASL password (KAFKA_SASL_PASSWORD_FILE)")
	fs.StringVar(&s.kafkaTLS, "kafka-tls", env("KAFKA_TLS", "false"), "TLS to the brokers (KAFKA_TLS)")
	fs.StringVar(&s.kafka.CAFile, "kafka-tls-ca-file", env("KAFKA_TLS_CA_FILE", ""), "PEM CA bundle for the brokers; default the system's (KAFKA_TLS_CA_FILE)")
	fs.StringVar(&s.kafka.CertFile, "kafka-tls-cert-file", env("KAFKA_TLS_CERT_FILE", ""), "PEM client certificate (KAFKA_TLS_CERT_FILE)")
	fs.StringVar(&s.kafka.KeyFile, "kafka-tls-key-file", env("KAFKA_TLS_KEY_FILE", ""), "PEM client key (KAFKA_TLS_KEY_FILE)")
	fs.StringVar(&s.kafka.ServerName, "kafka-tls-server-name", env("KAFKA_TLS_SERVER_NAME", ""), "name in the brokers' certificates; default their host (KAFKA_TLS_SERVER_NAME)")
	fs.StringVar(&s.clickhouseTLS, "clickhouse-tls", env("CLICKHOUSE_TLS", "false"), "TLS to ClickHouse's secure native port (CLICKHOUSE_TLS)")
	fs.StringVar(&s.clickhousePassFile, "clickhouse-password-file", env("CLICKHOUSE_PASSWORD_FILE", ""), "file holding the ClickHouse password (CLICKHOUSE_PASSWORD_FILE)")
}

// registerClickHouseTLS adds the ClickHouse TLS flags that fill ch.
func registerClickHouseTLS(fs *flag.FlagSet, ch *schemas.ClickHouseConfig) {
	fs.StringVar(&ch.TLSCAFile, "clickhouse-tls-ca-file", env("CLICKHOUSE_TLS_CA_FILE", ""), "PEM CA bundle for ClickHouse; default the system's (CLICKHOUSE_TLS_CA_FILE)")
	fs.StringVar(&ch.TLSServerName, "clickhouse-tls-server-name", env("CLICKHOUSE_TLS_SERVER_NAME", ""), "name in ClickHouse's certificate; default its host (CLICKHOUSE_TLS_SERVER_NAME)")
}

// load reads the password files and checks the settings; ch, when not nil,
// gets the ClickHouse TLS switch and password.
func (s *security) load(ch *schemas.ClickHouseConfig) error {
	var err error
	if s.kafka.TLS, err = strconv.ParseBool(s.kafkaTLS); err != nil {
		return fmt.Errorf("KAFKA_TLS: want true or false; got %q", s.kafkaTLS)
	}
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
	if ch.TLS, err = strconv.ParseBool(s.clickhouseTLS); err != nil {
		return fmt.Errorf("CLICKHOUSE_TLS: want true or false; got %q", s.clickhouseTLS)
	}
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
