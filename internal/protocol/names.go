package protocol

// ValidRoom reports whether s is a room name: 1–64 of A-Z a-z 0-9 _ - . :
func ValidRoom(s string) bool {
	return validChars(s, 64, true)
}

// ValidName reports whether s is a name a guest may pick with ?name=:
// 1–32 of A-Z a-z 0-9 _ - .
func ValidName(s string) bool {
	return validChars(s, 32, false)
}

func validChars(s string, max int, colon bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.':
		case c == ':' && colon:
		default:
			return false
		}
	}
	return true
}
