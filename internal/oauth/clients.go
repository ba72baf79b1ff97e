package oauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"
)

// ErrClientExists is wrapped by the error of CreateClient when the id is
// already in the clients file.
var ErrClientExists = errors.New("client already exists")

// Client is an OAuth2 client allowed the client-credentials grant.
type Client struct {
	// ID is the client_id: 1 to 64 of a-z A-Z 0-9 . _ -.
	ID string `json:"id" yaml:"id"`
	// SecretHash is HashSecret of the client secret. The secret itself is
	// shown once, by CreateClient, and stored nowhere.
	SecretHash string `json:"secret_hash" yaml:"secret_hash"`
	// Scopes are the scopes the client may get, at least one, each 1 to 64
	// of a-z 0-9 / _ : . -.
	Scopes []string `json:"scopes" yaml:"scopes"`
}

// clientsFile is the YAML document of a clients file.
type clientsFile struct {
	Clients []Client `yaml:"clients"`
}

const clientsFileHeader = "# holdfast OAuth2 clients (client-credentials grant). Secrets are stored\n" +
	"# as sha256:<base64url>; the secret itself is shown once, at creation.\n"

var (
	clientIDPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,64}$`)
	scopePattern    = regexp.MustCompile(`^[a-z0-9/_:.-]{1,64}$`)
)

// validate checks one client.
func (c Client) validate() error {
	if !clientIDPattern.MatchString(c.ID) {
		return fmt.Errorf("id %q must be 1 to 64 of a-z A-Z 0-9 . _ -", c.ID)
	}
	if !validSecretHash(c.SecretHash) {
		return fmt.Errorf("client %s: secret_hash must be sha256:<base64url of 32 bytes>, as HashSecret makes", c.ID)
	}
	if err := validateScopes(c.Scopes); err != nil {
		return fmt.Errorf("client %s: %w", c.ID, err)
	}
	return nil
}

// validateScopes checks a client's scope list: not empty, each valid, no
// repeats.
func validateScopes(scopes []string) error {
	if len(scopes) == 0 {
		return errors.New("scopes: at least one scope is needed")
	}
	for i, s := range scopes {
		if !scopePattern.MatchString(s) {
			return fmt.Errorf("scopes[%d] %q must be 1 to 64 of a-z 0-9 / _ : . -", i, s)
		}
		if j := slices.Index(scopes[:i], s); j >= 0 {
			return fmt.Errorf("scopes[%d] %q repeats scopes[%d]", i, s, j)
		}
	}
	return nil
}

// validateClients checks every client and that ids are unique.
func validateClients(cs []Client) error {
	seen := make(map[string]int, len(cs))
	for i, c := range cs {
		if err := c.validate(); err != nil {
			return fmt.Errorf("clients[%d]: %w", i, err)
		}
		if j, dup := seen[c.ID]; dup {
			return fmt.Errorf("clients[%d]: id %s is already used by clients[%d]", i, c.ID, j)
		}
		seen[c.ID] = i
	}
	return nil
}

// LoadClients reads a clients file. It refuses a file that group or others
// may access (ErrInsecureFile), unknown fields and invalid clients; a
// missing file is an error wrapping fs.ErrNotExist. An empty file holds no
// clients.
func LoadClients(path string) ([]Client, error) {
	b, _, err := readPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("oauth: clients file: %w", err)
	}
	return parseClients(path, b)
}

// parseClients decodes and validates the content of the clients file path.
func parseClients(path string, b []byte) ([]Client, error) {
	var f clientsFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("oauth: clients file %s: %w", path, err)
	}
	if err := validateClients(f.Clients); err != nil {
		return nil, fmt.Errorf("oauth: clients file %s: %w", path, err)
	}
	return f.Clients, nil
}

// SaveClients writes clients to path atomically, mode 0600, after checking
// them as LoadClients does.
func SaveClients(path string, clients []Client) error {
	if err := validateClients(clients); err != nil {
		return fmt.Errorf("oauth: save clients to %s: %w", path, err)
	}
	var buf bytes.Buffer
	buf.WriteString(clientsFileHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(clientsFile{Clients: clients}); err != nil {
		return fmt.Errorf("oauth: save clients to %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("oauth: save clients to %s: %w", path, err)
	}
	if _, err := writeFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("oauth: save clients to %s: %w", path, err)
	}
	return nil
}

// CreateClient adds a client with a new secret to the clients file at path
// (created if missing) and returns the secret, which is stored nowhere: show
// it to the operator once. An id already in the file is an error wrapping
// ErrClientExists.
func CreateClient(path, id string, scopes []string) (secret string, err error) {
	clients, err := LoadClients(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if slices.ContainsFunc(clients, func(c Client) bool { return c.ID == id }) {
		return "", fmt.Errorf("oauth: create client %s in %s: %w", id, path, ErrClientExists)
	}
	secret, err = NewSecret()
	if err != nil {
		return "", err
	}
	c := Client{ID: id, SecretHash: HashSecret(secret), Scopes: slices.Clone(scopes)}
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("oauth: create client: %w", err)
	}
	if err := SaveClients(path, append(clients, c)); err != nil {
		return "", err
	}
	return secret, nil
}
