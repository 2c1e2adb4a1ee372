package auth

import (
	"errors"
	"fmt"
)

// errCritical wraps every reason CheckCritical refuses a header.
var errCritical = errors.New(`"crit" header not satisfied`)

// jwsHeaderParams are the header parameters RFC 7515 section 4.1 defines. A
// "crit" list must not name them: they are not extensions.
var jwsHeaderParams = map[string]bool{
	"alg": true, "jku": true, "jwk": true, "kid": true, "x5u": true, "x5c": true,
	"x5t": true, "x5t#S256": true, "typ": true, "cty": true, "crit": true,
}

// CheckCritical enforces RFC 7515 section 4.1.11 on a JWS header: "crit" lists
// extension header parameters, present in the header, that a recipient must
// understand and process, or else refuse the JWS. Berth implements no JWS
// extension, so a header is accepted only when "crit" is absent or an empty
// list (which producers must not send, but which asks for nothing). A "crit"
// that is not a list of strings, or that names a parameter the header does not
// carry, a parameter RFC 7515 itself defines, or any extension, is refused
// with an error wrapping errCritical.
func CheckCritical(header map[string]any) error {
	v, ok := header["crit"]
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return fmt.Errorf("%w: not a list of header parameter names", errCritical)
	}
	names := make([]string, 0, len(list))
	for _, e := range list {
		name, ok := e.(string)
		switch {
		case !ok || name == "":
			return fmt.Errorf("%w: not a list of header parameter names", errCritical)
		case jwsHeaderParams[name]:
			return fmt.Errorf("%w: names %q, which is not an extension", errCritical, name)
		}
		if _, present := header[name]; !present {
			return fmt.Errorf("%w: names %q, which the header does not carry", errCritical, name)
		}
		names = append(names, name)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: names the extension %q, which this verifier does not implement", errCritical, names[0])
	}
	return nil
}
