package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-gitops/ferry/signing"
	"github.com/ferry-gitops/ferry/verify"
)

// maxKeyStatementFile bounds a statement file read from disk.
const maxKeyStatementFile = 64 << 10

func keyStatementCommand() *cobra.Command {
	var (
		keys                      []string
		name, publicKey, add, out string
		notBefore, notAfter       string
		revoke                    bool
	)
	cmd := &cobra.Command{
		Use:   "key-statement",
		Short: "Write or co-sign a key statement that introduces or revokes a key agents trust",
		Long: `key-statement writes a signed key statement: it introduces a new public key (or, with
--revoke, retires one) and is signed by each --key. An agent applies it when a bundle that
carries it (mirror pack --key-statement FILE) is accepted, if the statement is signed by as many
of the keys the agent trusts then as its threshold; the new key is trusted from the next bundle
on. With --add, the signatures are added to an existing statement instead (for keys held by
different people). Passwords are read from $` + signing.PasswordEnv + `.`,
		Example: `  # Introduce key B, signed by the current key A; carry it in the next bundle
  mirror key-statement --key a.key --name ops-b --public-key b.pub --out introduce-b.json
  mirror pack -f ferry.yaml --key a.key --key-statement introduce-b.json --tar next.tar

  # Later, retire key A with a statement signed by B
  mirror key-statement --key b.key --name ops-a --public-key a.pub --revoke --out revoke-a.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(keys) == 0 {
				return errors.New("--key: sign with at least one key the agents trust now")
			}
			var s *verify.SignedKeyStatement
			if add != "" {
				if name != "" || publicKey != "" || revoke || notBefore != "" || notAfter != "" {
					return errors.New("--add: the statement exists; give only --key (and --out)")
				}
				raw, err := readKeyStatement(add)
				if err != nil {
					return fmt.Errorf("--add: %w", err)
				}
				s = new(verify.SignedKeyStatement)
				if err := json.Unmarshal(raw, s); err != nil {
					return fmt.Errorf("--add %s: %w", add, err)
				}
			} else {
				if name == "" || publicKey == "" {
					return errors.New("--name and --public-key: name the key the statement introduces or revokes")
				}
				pem, err := os.ReadFile(publicKey)
				if err != nil {
					return fmt.Errorf("--public-key: %w", err)
				}
				if _, err := verify.ParsePublicKey(publicKey, pem); err != nil {
					return fmt.Errorf("--public-key: %w", err)
				}
				stmt := verify.KeyStatement{Name: name, PublicKey: string(pem), Revoke: revoke}
				for _, t := range []struct {
					flag string
					v    string
					dst  *time.Time
				}{{"--not-before", notBefore, &stmt.NotBefore}, {"--not-after", notAfter, &stmt.NotAfter}} {
					if t.v == "" {
						continue
					}
					if *t.dst, err = time.Parse(time.RFC3339, t.v); err != nil {
						return fmt.Errorf("%s %q: want a time such as 2027-01-01T00:00:00Z", t.flag, t.v)
					}
				}
				body, err := json.Marshal(stmt)
				if err != nil {
					return err
				}
				s = &verify.SignedKeyStatement{Statement: body}
			}
			for _, k := range keys {
				signer, err := signing.LoadKey(k, []byte(os.Getenv(signing.PasswordEnv)))
				if err != nil {
					return err
				}
				if err := s.Sign(signer, k); err != nil {
					return fmt.Errorf("--key %s: %w", k, err)
				}
			}
			b, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				return err
			}
			b = append(b, '\n')
			if out == "" || out == "-" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			return os.WriteFile(out, b, 0o644)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&keys, "key", nil, "cosign private key to sign the statement with (repeatable: one signature each)")
	f.StringVar(&name, "name", "", "the name of the key introduced or revoked, as agents show it")
	f.StringVar(&publicKey, "public-key", "", "the PEM public key introduced or revoked (cosign.pub)")
	f.BoolVar(&revoke, "revoke", false, "retire the key instead of introducing it: agents no longer trust it, and never again")
	f.StringVar(&notBefore, "not-before", "", "the introduced key is trusted from this time on (RFC 3339)")
	f.StringVar(&notAfter, "not-after", "", "the introduced key is trusted until this time (RFC 3339)")
	f.StringVar(&add, "add", "", "add the signatures to this existing statement file instead of writing a new one")
	f.StringVar(&out, "out", "", "write the statement here (default: standard output)")
	return cmd
}

// readKeyStatement reads a signed key statement file, bounded.
func readKeyStatement(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxKeyStatementFile {
		return nil, fmt.Errorf("%s: %d bytes, a key statement is at most %d", path, fi.Size(), maxKeyStatementFile)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s verify.SignedKeyStatement
	if err := json.Unmarshal(raw, &s); err != nil || len(s.Statement) == 0 {
		return nil, fmt.Errorf("%s: not a signed key statement (write one with 'mirror key-statement')", path)
	}
	return raw, nil
}
