package api

import (
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/modelgate/modelgate/fault"
	"github.com/modelgate/modelgate/registry"
)

// maxIfMatchTags bounds the entity tags one If-Match may list.
const maxIfMatchTags = 16

// ifMatch reads the If-Match header(s) of a change. Accepted: "*" (the
// record must exist), or a comma-separated list of entity tags, each a
// quoted revision ("7") as ETag gives them; a weak tag (W/"7") never
// matches, since If-Match compares strongly (RFC 9110). Anything else —
// an unquoted number, a tag that is not a revision, more than
// maxIfMatchTags tags — is a 400 invalid_if_match, never a silent 412 the
// client would retry forever.
func ifMatch(c *gin.Context) (registry.IfMatch, error) {
	lines := c.Request.Header.Values("If-Match")
	if len(lines) == 0 {
		return registry.IfMatch{}, nil
	}
	m := registry.IfMatch{Given: true}
	n := 0
	for _, line := range lines {
		for _, tag := range strings.Split(line, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "" {
				continue
			}
			if n++; n > maxIfMatchTags {
				return m, badIfMatch("at most %d entity tags", maxIfMatchTags)
			}
			switch {
			case tag == "*":
				m.Any = true
			case strings.HasPrefix(tag, `W/"`) && strings.HasSuffix(tag, `"`) && len(tag) >= 4:
				// a weak tag: well-formed, never a strong match
			case len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"':
				rev, err := strconv.ParseUint(tag[1:len(tag)-1], 10, 64)
				if err != nil {
					return m, badIfMatch("%s is not a revision this gateway gave as an ETag", tag)
				}
				m.Revisions = append(m.Revisions, rev)
			default:
				return m, badIfMatch("%s is not a quoted entity tag; send the ETag as given, quotes included, e.g. If-Match: \"3\"", tag)
			}
		}
	}
	if n == 0 {
		return m, badIfMatch("no entity tag")
	}
	return m, nil
}

func badIfMatch(format string, args ...any) error {
	return fault.New(fault.Invalid, "invalid_if_match", "If-Match: "+format, args...)
}

// setETag sends a record's revision as its strong entity tag.
func setETag(c *gin.Context, revision uint64) {
	c.Header("ETag", `"`+strconv.FormatUint(revision, 10)+`"`)
}
