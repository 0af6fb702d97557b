/* identity.c: placeholder until the part lands. */
#include "core.h"

void xs2a_identity_open(lua_State *L) { (void)L; }
