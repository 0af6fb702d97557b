/* http.c: placeholder until the part lands. */
#include "core.h"

void xs2a_http_open(lua_State *L) { (void)L; }
