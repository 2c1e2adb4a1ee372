package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/berth-registry/berth/auth"
	"github.com/berth-registry/berth/auth/issuer"
)

func (a *app) newAuthCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Create signing keys, htpasswd entries and tokens for the registry's authentication",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAuthKeygenCmd(), newAuthHtpasswdCmd(), newAuthTokenCmd())
	return cmd
}

func newAuthKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen [--out FILE]",
		Short: "Create an ES256 token signing key; print its kid and its public JWK Set",
		Long: `Create an ECDSA P-256 (ES256) signing key for the built-in token issuer
(auth.issuer.key) in FILE, as a PKCS#8 PEM file of mode 0600, creating its
directory if needed (mode 0700). An existing FILE is never overwritten.

Prints the key's kid (its RFC 7638 thumbprint) on the first line and the JWK
Set of its public part on the second: the file an external verifier, or
auth.token.jwks, trusts.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := os.Lstat(out); err == nil {
				return usageError(fmt.Errorf("%s already exists: a signing key is never overwritten", out))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			key, err := auth.LoadOrCreateSigningKey(out)
			if err != nil {
				return err
			}
			kid, err := auth.Thumbprint(key.Public())
			if err != nil {
				return err
			}
			jwks, err := auth.MarshalJWKS(key.Public())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "kid: %s\n%s\n", kid, jwks)
			return err
		},
	}
	// The default is that of auth.issuer.key.
	cmd.Flags().StringVar(&out, "out", "./data/auth-key.pem", "write the private key to `FILE`")
	return cmd
}

func newAuthHtpasswdCmd() *cobra.Command {
	var file string
	var cost int
	cmd := &cobra.Command{
		Use:   "htpasswd USER [--file FILE] [--cost N]",
		Short: "Hash a password read from stdin with bcrypt; print USER:HASH or set USER's line in FILE",
		Long: `Read USER's password from stdin (asked twice, without echo, on a terminal;
otherwise the first line), hash it with bcrypt and print the htpasswd line
USER:HASH, or, with --file, add it to FILE or replace USER's line there. FILE
is rewritten atomically with mode 0600; its other lines are kept as they are.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := cobra.ExactArgs(1)(cmd, args); err != nil {
				return usageError(err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := checkHtpasswdUser(user); err != nil {
				return usageError(err)
			}
			if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
				return usageError(fmt.Errorf("--cost %d: want %d to %d", cost, bcrypt.MinCost, bcrypt.MaxCost))
			}
			password, err := readPassword(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return usageError(err)
			}
			hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
			if err != nil {
				return usageError(fmt.Errorf("hashing the password: %w", err))
			}
			line := user + ":" + string(hash)
			if file == "" {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), line)
				return err
			}
			replaced, err := setHtpasswdLine(file, user, line)
			if err != nil {
				return err
			}
			verb := "added"
			if replaced {
				verb = "replaced"
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s user %q in %s\n", verb, user, file)
			return err
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "add or replace USER's line in the htpasswd `FILE` (created if missing) instead of printing it")
	cmd.Flags().IntVar(&cost, "cost", bcrypt.DefaultCost, "bcrypt cost `N`")
	return cmd
}

// checkHtpasswdUser refuses names that LoadHtpasswd would misread or that a
// client could not send as a Basic auth user.
func checkHtpasswdUser(user string) error {
	if user == "" || strings.HasPrefix(user, "#") || strings.ContainsAny(user, ": \t\r\n") {
		return fmt.Errorf("user %q: must be non-empty, not start with '#', and contain no ':' or white space", user)
	}
	return nil
}

// readPassword reads a password from in: asked twice without echo if in is a
// terminal (the prompts go to prompt), otherwise the first line.
func readPassword(in io.Reader, prompt io.Writer) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		ask := func(p string) ([]byte, error) {
			fmt.Fprint(prompt, p)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(prompt)
			return b, err
		}
		p1, err := ask("Password: ")
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		p2, err := ask("Confirm password: ")
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		if !bytes.Equal(p1, p2) {
			return "", errors.New("the passwords do not match")
		}
		if len(p1) == 0 {
			return "", errors.New("empty password")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from stdin: %w", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("no password on stdin")
	}
	return line, nil
}

// setHtpasswdLine puts line in the htpasswd file path in place of user's
// line, or at the end if user has none, and reports whether it replaced one.
// Other lines stay as they are. The file is replaced atomically, mode 0600.
func setHtpasswdLine(path, user, line string) (replaced bool, err error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	var out bytes.Buffer
	for l := range strings.Lines(string(old)) {
		text := strings.TrimRight(l, "\r\n")
		if u, _, ok := strings.Cut(text, ":"); ok && u == user {
			if !replaced { // a duplicate (which LoadHtpasswd refuses) is dropped
				out.WriteString(line + "\n")
				replaced = true
			}
			continue
		}
		out.WriteString(text + "\n")
	}
	if !replaced {
		out.WriteString(line + "\n")
	}
	return replaced, writeFileAtomic(path, out.Bytes())
}

// writeFileAtomic replaces path with b, mode 0600: a temporary file in the
// same directory, fsynced, then renamed over path.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	// Make the rename itself durable; failing to is not worth an error.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func newAuthTokenCmd() *cobra.Command {
	var keyFile, user, service, iss string
	var scopes []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token --key FILE --user USER --scope SCOPE [--scope SCOPE...] [--service NAME] [--issuer NAME] [--ttl DURATION]",
		Short: "Print an access token for scripts and tests, signed with a signing key",
		Long: `Print an access token signed with the key in FILE (see berth auth keygen),
as the built-in issuer signs them, for USER with exactly the given scopes
("repository:team-a/app:pull,push", "registry:catalog:*"). No policy is
consulted: whoever holds the key may grant anything. --service and --issuer
must match auth.token.service and auth.token.issuer of the registry.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case keyFile == "":
				return usageError(errors.New("--key is required"))
			case user == "":
				return usageError(errors.New("--user is required"))
			case len(scopes) == 0:
				return usageError(errors.New("--scope is required"))
			case ttl <= 0:
				return usageError(fmt.Errorf("--ttl %v: must be positive", ttl))
			}
			var access []auth.Access
			for _, s := range scopes {
				for f := range strings.FieldsSeq(s) {
					a, err := auth.ParseScope(f)
					if err != nil {
						return usageError(err)
					}
					access = append(access, a)
				}
			}
			// LoadOrCreateSigningKey would create a missing key: a token
			// signed by a key nobody trusts is of no use.
			if _, err := os.Stat(keyFile); err != nil {
				return usageError(fmt.Errorf("signing key: %w (berth auth keygen creates one)", err))
			}
			key, err := auth.LoadOrCreateSigningKey(keyFile)
			if err != nil {
				return usageError(err)
			}
			jti := make([]byte, 16)
			if _, err := rand.Read(jti); err != nil {
				return err
			}
			now := time.Now().UTC().Truncate(time.Second)
			token, err := issuer.Sign(key, &auth.Claims{
				RegisteredClaims: jwt.RegisteredClaims{
					Issuer:    iss,
					Subject:   user,
					Audience:  jwt.ClaimStrings{service},
					ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
					NotBefore: jwt.NewNumericDate(now),
					IssuedAt:  jwt.NewNumericDate(now),
					ID:        base64.RawURLEncoding.EncodeToString(jti),
				},
				Access: access,
			})
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), token)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "sign with the private key in `FILE`")
	f.StringVar(&user, "user", "", "the token's subject, `USER`")
	f.StringArrayVar(&scopes, "scope", nil, "grant `SCOPE` (type:name:actions); repeat for more")
	f.StringVar(&service, "service", "berth", "the audience, auth.token.service of the registry")
	f.StringVar(&iss, "issuer", "berth", "the issuer, auth.token.issuer of the registry")
	f.DurationVar(&ttl, "ttl", time.Hour, "lifetime of the token")
	return cmd
}
