//! A response body that counts the bytes it hands to hyper: bytes served are
//! what the client was actually sent (short of what the kernel still held when
//! a connection died), not what `Content-Length` promised.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::{Metrics, Route};
use crate::status::CacheStatus;

pub struct CountedBody<B> {
    inner: B,
    metrics: Arc<Metrics>,
    route: Route,
    cache: CacheStatus,
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, metrics: Arc<Metrics>, route: Route, cache: CacheStatus) -> Self {
        CountedBody {
            inner,
            metrics,
            route,
            cache,
        }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                if !data.is_empty() {
                    self.metrics
                        .add_served(self.route, self.cache, data.len() as u64);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
