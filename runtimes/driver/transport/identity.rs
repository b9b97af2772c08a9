//! `use_identity_as_username`: the common name of a client's certificate replaces the user
//! name (and the password) of its CONNECT before the broker's connection sees it, so that
//! authentication and the ACLs see the certificate's name, as with Mosquitto's option of that
//! name. The core never learns about certificates.

use bytes::BytesMut;

use super::TransportError;
use crate::codec::{encode, Decoder, Packet};
use crate::{ByteStr, ProtocolVersion};

/// The largest CONNECT taken (with its will); a bigger one closes the connection.
const MAX_CONNECT: u32 = 1 << 20;

/// Holds a connection's first bytes until its CONNECT is whole, then rewrites it.
#[derive(Debug, Default)]
pub(crate) struct Identity {
    buf: BytesMut,
    /// The CONNECT went through; everything else passes unchanged.
    done: bool,
}

impl Identity {
    /// MQTT bytes from the transport, to `app`; `name` is the certificate's common name.
    pub(crate) fn input(
        &mut self,
        name: Option<String>,
        data: &[u8],
        app: &mut Vec<u8>,
    ) -> Result<(), TransportError> {
        if self.done {
            app.extend_from_slice(data);
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        // CONNECT carries its own version; the decoder's is not used for it.
        let decoder = Decoder::new(ProtocolVersion::V5).with_max_packet_size(MAX_CONNECT);
        let refuse = |why: String| TransportError::Identity(why);
        let packet = match decoder.decode(&mut self.buf) {
            Ok(None) => return Ok(()),
            Ok(Some(p)) => p,
            Err(e) => return Err(refuse(format!("first packet: {e}"))),
        };
        let Packet::Connect(mut connect) = packet else {
            return Err(refuse("the first packet is not a CONNECT".into()));
        };
        let Some(name) = name else {
            return Err(refuse(
                "no client certificate to take the user name from".into(),
            ));
        };
        let name = ByteStr::try_from(name.as_str())
            .map_err(|_| refuse("unusable certificate name".into()))?;
        connect.username = Some(name);
        connect.password = None;
        let version = connect.protocol;
        let mut out = BytesMut::new();
        encode(&Packet::Connect(connect), version, &mut out)
            .map_err(|e| refuse(format!("CONNECT: {e}")))?;
        app.extend_from_slice(&out);
        app.extend_from_slice(&self.buf);
        self.buf = BytesMut::new();
        self.done = true;
        Ok(())
    }
}
