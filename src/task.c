/* Tasks: placeholder until the coroutine layer lands. */
#include "internal.h"

void cio__tasks_close(cio_loop *loop) { (void)loop; }
